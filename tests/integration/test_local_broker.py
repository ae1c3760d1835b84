"""deploy/kafka/kafka-local.sh: the broker that `start` leaves running holds none of its caller's
file descriptors, so a lock the caller held while starting it (`flock LOCK kafka-local.sh start
...`) is free again once the caller lets go of it."""

import fcntl
import os
import subprocess
from pathlib import Path

from dev.local_kafka import SCRIPT, LocalBroker, free_port_pair


def open_files(pid: int) -> set[str]:
    """What the process's descriptors point at (ones closed while we look are skipped)."""
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.add(os.readlink(fd))
        except FileNotFoundError:
            continue
    return targets


def test_a_lock_held_by_the_caller_is_not_inherited_by_the_broker(tmp_path: Path) -> None:
    lock_path = tmp_path / "start.lock"
    broker = LocalBroker(tmp_path / "kafka", free_port_pair())
    try:
        # given a caller holding a lock on a descriptor its children inherit
        with lock_path.open("w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            # when it starts the broker through the script
            started = subprocess.run(
                [str(SCRIPT), "start", str(broker.data_dir), str(broker.port)],
                pass_fds=(held.fileno(),),
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert started.returncode == 0, started.stdout + started.stderr
        # and then lets go of the lock (closing its descriptor)

        # then the running broker has no descriptor on the lock file
        pid = broker.pid
        assert pid is not None
        assert broker.running()
        assert str(lock_path) not in open_files(pid)
        # and another open file description can take the lock (flock raises BlockingIOError
        # while any process still holds a descriptor of the caller's)
        with lock_path.open("w") as again:
            fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        broker.stop()
