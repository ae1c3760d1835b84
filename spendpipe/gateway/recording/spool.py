"""A bounded on-disk spool for events that Kafka could not take.

Payloads are appended to segment files (`segment-<n>.jsonl`, one payload per line; the JSON
encoding has no raw newlines) and replayed oldest segment first. A segment is deleted only
after Kafka acknowledged every payload in it, so a crash replays it again: the aggregator
drops the duplicates by event id. A line cut short by a crash is skipped and counted.

Used from one thread only, the publisher's. The spool survives the process: a gateway that
restarts delivers what the previous one spooled.
"""

import logging
from pathlib import Path

log = logging.getLogger(__name__)

_PREFIX = "segment-"
_SUFFIX = ".jsonl"


class DiskSpool:
    def __init__(self, *, directory: Path, max_bytes: int, segment_bytes: int = 8 << 20) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._sealed: list[Path] = []
        self._current: Path | None = None
        self._next_sequence = 1
        self._bytes = 0
        self._opened = False
        self.torn_lines = 0

    def _open(self) -> None:
        """Pick up segments left by an earlier process (first use, not __init__: no I/O there)."""
        if self._opened:
            return
        self._opened = True
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            # an unusable spool holds nothing; every append fails, and the publisher counts the loss
            log.error("spendpipe spool directory %s is unusable: %r", self._directory, error)
            return
        self._sealed = sorted(self._directory.glob(f"{_PREFIX}*{_SUFFIX}"), key=_sequence)
        self._bytes = sum(path.stat().st_size for path in self._sealed)
        self._next_sequence = _sequence(self._sealed[-1]) + 1 if self._sealed else 1

    @property
    def size_bytes(self) -> int:
        self._open()
        return self._bytes

    @property
    def empty(self) -> bool:
        return self.size_bytes == 0

    def append(self, payloads: list[bytes]) -> int:
        """Write what fits under the bound, in order. Returns how many payloads did not fit."""
        self._open()
        accepted: list[bytes] = []
        for payload in payloads:
            if self._bytes + len(payload) + 1 > self._max_bytes:
                break
            accepted.append(payload)
            self._bytes += len(payload) + 1
        if accepted:
            with self._writable_segment().open("ab") as segment:
                segment.write(b"".join(payload + b"\n" for payload in accepted))
        return len(payloads) - len(accepted)

    def oldest(self) -> tuple[Path, list[bytes]] | None:
        """The oldest segment and its payloads, or None when the spool is empty.

        The segment being written is sealed first, so what is returned is complete.
        """
        self._open()
        if not self._sealed:
            self._seal_current()
        if not self._sealed:
            return None
        segment = self._sealed[0]
        lines = segment.read_bytes().split(b"\n")
        if lines[-1]:
            self.torn_lines += 1
            log.error("spool segment %s ends in a torn line; %d bytes skipped", segment, len(lines[-1]))
        return segment, [line for line in lines[:-1] if line]

    def remove(self, segment: Path) -> None:
        """Forget a segment whose payloads Kafka acknowledged."""
        self._bytes -= segment.stat().st_size
        segment.unlink()
        self._sealed.remove(segment)

    def _seal_current(self) -> None:
        if self._current is not None:
            self._sealed.append(self._current)
            self._current = None

    def _writable_segment(self) -> Path:
        if self._current is not None and self._current.stat().st_size >= self._segment_bytes:
            self._seal_current()
        if self._current is None:
            self._current = self._directory / f"{_PREFIX}{self._next_sequence}{_SUFFIX}"
            self._next_sequence += 1
        return self._current


def _sequence(path: Path) -> int:
    return int(path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX))
