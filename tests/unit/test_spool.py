"""The disk spool when its disk fails it: a write cut short leaves nothing behind (no payload both
counted as lost and replayed, no torn line glued to the next one), and a stray file named like a
segment is left alone rather than stopping the publisher."""

import errno
import io
from pathlib import Path

import pytest

from spendpipe.gateway.recording.spool import DiskSpool

E1, E2, E3 = (f'{{"event_id":"e{n}","key_hash":"k"}}'.encode() for n in (1, 2, 3))


class FullAfter(io.FileIO):
    """A segment on a disk that fills up after `room` more bytes (ENOSPC, as a full disk)."""

    def __init__(self, path: Path, mode: str, room: int) -> None:
        super().__init__(path, mode.replace("b", ""))
        self.room = room

    def write(self, data: object) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        chunk = bytes(memoryview(data))[: self.room]  # type: ignore[arg-type]
        self.room -= len(chunk)
        return super().write(chunk)


class OnFullDisk:
    """A segment's path whose `open` gives a `FullAfter` file."""

    def __init__(self, path: Path, room: int) -> None:
        self.path, self.room = path, room

    def open(self, mode: str, buffering: int = -1) -> io.RawIOBase | io.BufferedWriter:
        raw = FullAfter(self.path, mode, self.room)
        return raw if buffering == 0 else io.BufferedWriter(raw)  # as `Path.open` gives it


def replayed(spool: DiskSpool) -> list[bytes]:
    """Every payload the spool gives for replay, oldest segment first, as the publisher takes them."""
    payloads: list[bytes] = []
    while (taken := spool.oldest()) is not None:
        segment, values = taken
        payloads += values
        spool.remove(segment)
    return payloads


def test_an_append_the_disk_cuts_short_leaves_nothing_of_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = DiskSpool(directory=tmp_path, max_bytes=1 << 20)
    segment_of = spool._writable_segment

    # given a disk that takes 40 bytes of a two-event append, then is full
    monkeypatch.setattr(spool, "_writable_segment", lambda segments: OnFullDisk(segment_of(segments), room=40))
    with pytest.raises(OSError, match="No space left"):
        spool.append([E1, E2])  # the publisher counts both as lost (spool_error)

    # when the disk has room again and the next event is spooled
    monkeypatch.setattr(spool, "_writable_segment", segment_of)
    assert spool.append([E3]) == 0

    # then only that event is replayed, whole: none of the lost ones, nothing glued to it
    assert replayed(spool) == [E3]
    assert spool.torn_lines == 0


def test_a_stray_file_named_like_a_segment_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "segment-x.jsonl").write_bytes(b"not ours\n")
    spool = DiskSpool(directory=tmp_path, max_bytes=1 << 20)

    assert spool.append([E1]) == 0

    assert replayed(spool) == [E1]
