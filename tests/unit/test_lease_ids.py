"""The proxy's lease ids: as random as `uuid4().hex`, read from the OS in batches."""

import os
import re

from spendpipe.gateway.rate_limits.leases import LeaseIds


def test_lease_ids_are_distinct_128_bit_hex() -> None:
    ids = LeaseIds()

    taken = [ids() for _ in range(1000)]  # several batches

    assert len(set(taken)) == len(taken)
    assert all(re.fullmatch(r"[0-9a-f]{32}", lease) for lease in taken)


def test_a_forked_child_takes_none_of_its_parents_ids() -> None:
    ids = LeaseIds()
    ids()  # the parent holds a batch
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    in_child = os.read(read, 64).decode()
    os.close(read)

    assert in_child not in [ids() for _ in range(255)]
