"""Two processes sharing one spool directory (a publisher child left running after its gateway was
killed, beside the next gateway's child): while both append and replay at once, every payload
spooled is replayed exactly once and whole, none lost with a segment another process removed."""

import subprocess
import sys
from pathlib import Path

from spendpipe.gateway.recording.spool import DiskSpool

WRITES = 1_500
WITHIN_S = 120.0

PROCESS = """
import sys
from pathlib import Path
from spendpipe.gateway.recording.spool import DiskSpool

name, directory, writes, replayed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
spool = DiskSpool(directory=directory, max_bytes=1 << 30, segment_bytes=2_000)
sys.stdin.readline()  # both start together
with replayed.open("wb") as out:
    for n in range(writes):
        assert spool.append([f'{{"writer":"{name}","n":{n}}}'.encode()]) == 0
        if n % 3 == 0 and (taken := spool.oldest()) is not None:  # as a publisher replays between batches
            segment, values = taken
            out.write(b"".join(value + b"\\n" for value in values))
            out.flush()
            spool.remove(segment)
"""


def test_two_processes_appending_and_replaying_one_spool_lose_and_repeat_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, name, str(directory), str(WRITES), str(tmp_path / name)],
            stdin=subprocess.PIPE,
        )
        for name in ("old-child", "new-child")
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
    assert [process.wait(WITHIN_S) for process in processes] == [0, 0]

    replayed = [line for name in ("old-child", "new-child") for line in (tmp_path / name).read_bytes().splitlines()]
    rest = DiskSpool(directory=directory, max_bytes=1 << 30)
    while (taken := rest.oldest()) is not None:
        replayed += taken[1]
        rest.remove(taken[0])

    expected = [f'{{"writer":"{name}","n":{n}}}'.encode() for name in ("old-child", "new-child") for n in range(WRITES)]
    assert sorted(replayed) == sorted(expected)
    assert rest.torn_lines == 0
    assert rest.empty
