"""A bounded on-disk spool for events that Kafka could not take.

Payloads are appended to segment files (`segment-<n>.jsonl`, one payload per line; the JSON
encoding has no raw newlines) and replayed oldest segment first. A segment is deleted only
after Kafka acknowledged every payload in it, so a crash replays it again: the aggregator
drops the duplicates by event id. A line cut short by a crash is skipped and counted.

The spool survives the process: a gateway that restarts delivers what the previous one spooled.
**Several processes may share the directory** (a publisher child left running after its gateway
was killed, beside the next gateway's child), so every use of it holds an OS lock
(`fcntl.flock` on `spool.lock`) and reads the directory afresh: two processes never write to the
same segment, and never read one another is writing. A segment taken for replay is renamed
(`replaying-<n>.jsonl`) and locked while its payloads are sent: a process still appending to it
starts a new segment, and no other process replays it too; one left by a process that died
(its lock released by the OS) is replayed by the next.
"""

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_PREFIX = "segment-"
_REPLAYING = "replaying-"
_SUFFIX = ".jsonl"
_LOCK = "spool.lock"
_REFRESH_S = 1.0
"""How stale `size_bytes` may be: what another process spooled is seen within this."""


class DiskSpool:
    def __init__(self, *, directory: Path, max_bytes: int, segment_bytes: int = 8 << 20) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._current: Path | None = None
        """The segment this process appends to, while it is still there (not taken for replay)."""
        self._replaying: dict[Path, int] = {}
        """Segments this process took for replay, each with the descriptor holding its lock."""
        self._bytes = 0
        self._refreshed = float("-inf")
        self._lock_fd: int | None = None
        self._usable = True
        self._thread_lock = threading.Lock()  # flock excludes processes; this, this one's threads
        self._held_elsewhere = False
        self.torn_lines = 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        """The directory, locked against other processes and threads (first use opens it: no I/O
        in __init__); yields False when it is unusable."""
        with self._thread_lock:
            if self._lock_fd is None and self._usable:
                try:
                    self._directory.mkdir(parents=True, exist_ok=True)
                    self._lock_fd = os.open(self._directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError as error:
                    # an unusable spool holds nothing; every append fails, and the publisher counts the loss
                    log.error("spendpipe spool directory %s is unusable: %r", self._directory, error)
                    self._usable = False
            if self._lock_fd is None:
                yield False
                return
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _segments(self) -> list[Path]:
        """Every segment in the directory, oldest first (those taken for replay before the rest);
        a file named like one but without a number (not written here) is left alone."""
        found = [*self._directory.glob(f"{_REPLAYING}*{_SUFFIX}"), *self._directory.glob(f"{_PREFIX}*{_SUFFIX}")]
        numbered = [path for path in found if _number(path).isdigit()]
        return sorted(numbered, key=lambda path: (not path.name.startswith(_REPLAYING), _sequence(path)))

    def _refresh(self) -> list[Path]:
        """Read the directory afresh (the lock held)."""
        segments = self._segments()
        self._bytes = sum(_size(path) for path in segments)
        self._refreshed = time.monotonic()
        return segments

    @property
    def size_bytes(self) -> int:
        if time.monotonic() - self._refreshed >= _REFRESH_S:
            with self._locked() as usable:
                if usable:
                    self._refresh()
        return self._bytes

    @property
    def empty(self) -> bool:
        return self.size_bytes == 0

    @property
    def held_elsewhere(self) -> bool:
        """The last `oldest()` found segments but could take none: other processes replay them.
        Until this process appends again, it has nothing to replay (it tries again later: a
        process that dies releases its segment)."""
        return self._held_elsewhere

    def append(self, payloads: list[bytes]) -> int:
        """Write what fits under the bound, in order. Returns how many payloads did not fit.
        Raises OSError when the spool cannot be written."""
        with self._locked() as usable:
            if not usable:
                raise OSError(f"spool directory {self._directory} is unusable")
            segments = self._refresh()
            accepted: list[bytes] = []
            for payload in payloads:
                if self._bytes + len(payload) + 1 > self._max_bytes:
                    break
                accepted.append(payload)
                self._bytes += len(payload) + 1
            if accepted:
                self._held_elsewhere = False
                try:
                    _append_whole(self._writable_segment(segments), b"".join(payload + b"\n" for payload in accepted))
                except OSError:
                    self._current = None  # never append to a segment a failed write may have left torn
                    raise
        return len(payloads) - len(accepted)

    def oldest(self) -> tuple[Path, list[bytes]] | None:
        """The oldest segment no other process is replaying, taken for replay (`remove` it once
        Kafka acknowledged its payloads), and its payloads; None when there is none."""
        with self._locked() as usable:
            if not usable:
                return None
            segments = self._refresh()
            for segment in segments:
                taken = self._take(segment)
                if taken is not None:
                    self._held_elsewhere = False
                    return taken
            self._held_elsewhere = bool(segments)
        return None

    def remove(self, segment: Path) -> None:
        """Forget a segment taken by `oldest` whose payloads Kafka acknowledged."""
        with self._locked():
            self._bytes -= _size(segment)
            segment.unlink(missing_ok=True)
            fd = self._replaying.pop(segment, None)
            if fd is not None:
                os.close(fd)  # its lock goes with it

    def _take(self, segment: Path) -> tuple[Path, list[bytes]] | None:
        if segment in self._replaying:
            replaying = segment
        else:
            if segment.name.startswith(_REPLAYING):
                replaying = segment  # left by a process that died, if no one holds its lock
            else:
                replaying = segment.with_name(_REPLAYING + segment.name.removeprefix(_PREFIX))
                segment.rename(replaying)  # whoever appended to it starts a new segment
                if segment == self._current:
                    self._current = None
            fd = os.open(replaying, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process replays it
                os.close(fd)
                return None
            self._replaying[replaying] = fd
        lines = replaying.read_bytes().split(b"\n")
        if lines[-1]:
            self.torn_lines += 1
            log.error("spool segment %s ends in a torn line; %d bytes skipped", replaying, len(lines[-1]))
        return replaying, [line for line in lines[:-1] if line]

    def _writable_segment(self, segments: list[Path]) -> Path:
        current = self._current
        if current is None or not current.exists() or _size(current) >= self._segment_bytes:
            current = self._directory / f"{_PREFIX}{max(map(_sequence, segments), default=0) + 1}{_SUFFIX}"
            self._current = current
        return current


def _number(path: Path) -> str:
    return path.name.removeprefix(_REPLAYING).removeprefix(_PREFIX).removesuffix(_SUFFIX)


def _sequence(path: Path) -> int:
    return int(_number(path))


def _append_whole(path: Path, data: bytes) -> None:
    """Append `data` whole or not at all: a write cut short (a full disk) is taken back, so no
    payload is both counted as lost and on disk to be replayed, and no torn line is left for the
    next append to be glued to. (If even taking it back fails, the caller starts a new segment
    and the torn line is skipped and counted at replay.)"""
    with path.open("ab", buffering=0) as segment:
        start = segment.seek(0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                written = segment.write(view)
                if not written:
                    raise OSError(errno.EIO, f"{path} took none of {len(view)} bytes")
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fileno(), start)
            raise


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed by another process meanwhile
        return 0
