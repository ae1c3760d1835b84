"""What crosses the pipe between a gateway process and its publisher subprocess
(`publisher_process.py`, `publisher_child.py`).

**A logged call** is `snapshot(kwargs)`: the fields the event builder reads (`logged_call.read_shape`,
the raw key hashed as in the in-thread copy), pickled on the request path. Pickling is the copy:
the bytes do not change when LiteLLM or another callback changes the call afterwards, and no deep
copy is made. A value is sent as it is when it is plain data (text, numbers, bytes, datetimes,
and lists, tuples and dicts of those); anything else is sent as its label (`labels.label_of`), the
value every reader of that field takes from it, and the request tags item by item. So the child
builds the event the call would build (`tests/unit/test_wire.py`), except that a field read as a
number that held an object builds the fallback event by another exception. Pickle, not JSON:
a datetime, a tuple, a big integer and a NaN cost come back as they were, and `restore` (the
child) accepts no class but datetime's, so the bytes can only ever be data. The snapshot also
holds when the call was recorded (`RECORDED_AT`), so an event time the call does not name is the
same in every child the call is sent to.

The dicts LiteLLM hands over are plain dicts, and their snapshot is flat (`_flatten`): the values
alone, in the fixed order of the shape (`_Plan`), None for a field not taken and a flag before
each inner dict, as one pickled tuple. It sends no key and builds no dict on the request path,
which saves about 40% of the snapshot's cost in a tight loop; the child rebuilds the dict the
field-by-field walk (`_taken`) would have sent. A Mapping of another type on the way is walked
as before.

**Frames**: host to child, a config frame first (`ChildConfig`: length, 4 bytes, and pickle),
then one frame per call: sequence number (8 bytes), length (4 bytes), snapshot. Child to host,
reports (`Report`), framed as the config. A frame cut short by a dying child is never read as a whole one.
"""

import io
import pickle
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.labels import label_of
from spendpipe.gateway.recording.event_builder import Recorded
from spendpipe.gateway.recording.logged_call import Leaf, Shape, copy_shaped, read_shape
from spendpipe.gateway.recording.publisher import PublisherOptions
from spendpipe.platform.kafka import KafkaSettings

RECORD_HEADER = struct.Struct("!QI")
"""A call's frame: its sequence number and the snapshot's length."""
LENGTH_HEADER = struct.Struct("!I")
"""The config's frame and a report's: the pickle's length."""
MAX_FRAME = 1 << 30
"""A report longer than this is refused (one accounts at most `queue_size` events, about a hundred
bytes each: call ids longer than `MAX_CALL_ID` are not sent)."""
MAX_CALL_ID = 256

_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


def _plain(value: object, depth: int = 0) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is datetime:
        zone = value.tzinfo  # type: ignore[attr-defined]
        return zone is None or type(zone) is timezone
    if depth > 16:
        return False
    if kind is list or kind is tuple:
        return all(_plain(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())  # type: ignore[attr-defined]
    return False


def _sent(value: object) -> object:
    return value if _plain(value) else label_of(value)


def _sent_tags(value: object) -> object:
    if type(value) is list or type(value) is tuple:
        return [_sent(item) for item in value]
    return _sent(value)


_SHAPE = read_shape(_sent, tags=_sent_tags)


def snapshot(kwargs: Any) -> bytes:
    """The logged call as the child reads it, with the time it was recorded (`RECORDED_AT`); never
    raises for what LiteLLM hands a callback."""
    at = time.time()
    if type(kwargs) is dict:
        values: list[object] = [_PLAN_ID, at]
        if _flatten(kwargs, _PLAN, values):
            return pickle.dumps(tuple(values), protocol=pickle.HIGHEST_PROTOCOL)
    taken = _taken(kwargs, _SHAPE)
    taken[RECORDED_AT] = at
    return pickle.dumps(taken, protocol=pickle.HIGHEST_PROTOCOL)


RECORDED_AT = "spendpipe_recorded_at"
"""The snapshot's field holding when the call was recorded (a Unix timestamp): the time of an
event whose call names no start or end, and of a fallback event, fixed on the request path so a
call sent again to a new child builds the same event (a conflicting duplicate otherwise). The
flat form carries it as its second value, after the shape's id (`_PLAN_ID`)."""


def recorded_at(call: Mapping[str, Any]) -> datetime | None:
    """When a restored snapshot's call was recorded (None for a snapshot without the field)."""
    at = call.get(RECORDED_AT)
    return datetime.fromtimestamp(at, UTC) if type(at) is float else None


@dataclass(frozen=True)
class _Plan:
    """One dict of `_SHAPE`, in the fixed order the flat form takes it: the fields taken by
    `_sent`, then those with a rule of their own, then the dicts inside it."""

    plain: tuple[str, ...]
    ruled: tuple[tuple[str, Leaf], ...]
    inner: tuple[tuple[str, "_Plan"], ...]

    @classmethod
    def of(cls, shape: Shape) -> "_Plan":
        leaves = {name: rule for name, rule in shape.items() if not isinstance(rule, dict)}
        return cls(
            plain=tuple(name for name, rule in leaves.items() if rule is _sent),
            ruled=tuple((name, rule) for name, rule in leaves.items() if rule is not _sent),
            inner=tuple((name, cls.of(rule)) for name, rule in shape.items() if isinstance(rule, dict)),
        )


_PLAN = _Plan.of(_SHAPE)


def _names(plan: _Plan) -> tuple[object, ...]:
    return (
        plan.plain,
        tuple(name for name, _ in plan.ruled),
        tuple((name, _names(inner)) for name, inner in plan.inner),
    )


_PLAN_ID = zlib.crc32(repr(_names(_PLAN)).encode())
"""The flat form's first value: which shape its values follow. A child of another version (the
package upgraded in place, the child restarted) refuses the snapshot rather than read a value
into another field's place."""


def _flatten(source: dict[str, Any], plan: _Plan, values: list[object]) -> bool:
    """What `_taken` takes from `source`, as a flat list of values in `plan`'s order (None: not
    taken; each inner dict is preceded by whether it is there), appended to `values`: no key is
    sent and no dict built, which is most of what the walk and the pickle cost. False (and
    `values` is to be dropped) when a dict on the way is a Mapping of another type: `_taken`'s
    careful way then."""
    taken = list(map(source.get, plan.plain))
    if not _PLAIN.issuperset(map(type, taken)):
        taken = [value if type(value) in _PLAIN else _sent(value) for value in taken]
    values += taken
    for name, rule in plan.ruled:
        value = source.get(name)
        values.append(None if value is None else rule(value))
    for name, inner in plan.inner:
        value = source.get(name)
        if type(value) is dict:
            values.append(True)
            if not _flatten(value, inner, values):
                return False
        elif isinstance(value, Mapping):
            return False
        else:  # absent, or not a dict: `_taken` takes nothing of it
            values.append(False)
    return True


def _unflatten(values: Iterator[object], plan: _Plan) -> dict[str, Any]:
    """The dict `_taken` gives, from `_flatten`'s values."""
    call: dict[str, Any] = {}
    for name in plan.plain:
        if (value := next(values)) is not None:
            call[name] = value
    for name, _ in plan.ruled:
        if (value := next(values)) is not None:
            call[name] = value
    for name, inner in plan.inner:
        there = next(values)
        if there is True:
            call[name] = _unflatten(values, inner)
        elif there is not False:
            raise pickle.UnpicklingError("a snapshot's flag of an inner dict is not a bool")
    return call


def _taken(source: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """`copy_shaped` by `_SHAPE`, on every call: plain dicts (what LiteLLM hands over) are read
    without its guards, from whichever of the dict and the shape is smaller, and plain values
    without a call; anything else takes its careful way."""
    if type(source) is not dict:
        return copy_shaped(source, shape)
    taken: dict[str, Any] = {}
    pairs = ((name, source.get(name)) for name in shape) if len(shape) <= len(source) else source.items()
    for name, value in pairs:
        rule = shape.get(name)
        if value is None or rule is None:
            continue
        if rule is _sent and type(value) in _PLAIN:
            taken[name] = value
        elif type(rule) is dict:
            if type(value) is dict or isinstance(value, Mapping):
                taken[name] = _taken(value, rule)
        elif (kept := rule(value)) is not None:  # type: ignore[operator]
            taken[name] = kept
    return taken


def built_snapshot(event: SpendEvent) -> bytes:
    """An event built already, sent to the child as it is."""
    return pickle.dumps({BUILT: event.to_json()}, protocol=pickle.HIGHEST_PROTOCOL)


BUILT = "spendpipe_built_event"
"""The one field of a `built_snapshot` (no logged call has it)."""

_ALLOWED = {("datetime", "datetime"), ("datetime", "timezone"), ("datetime", "timedelta")}


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not data")
        return super().find_class(module, name)


def restore(data: bytes) -> dict[str, Any]:
    """A snapshot back as the call's fields. Raises `pickle.UnpicklingError` (or another error of
    pickle's) for bytes that are not a snapshot."""
    call = _DataOnly(io.BytesIO(data)).load()
    if type(call) is tuple:
        values = iter(call)
        try:
            if next(values) != _PLAN_ID:
                raise pickle.UnpicklingError("a snapshot follows another version's shape")
            at = next(values)
            if type(at) is not float:
                raise pickle.UnpicklingError("a snapshot's recorded time is not a float")
            call = _unflatten(values, _PLAN)
            call[RECORDED_AT] = at
        except StopIteration:
            raise pickle.UnpicklingError("a snapshot's values end early") from None
        if next(values, _END) is not _END:
            raise pickle.UnpicklingError("a snapshot has values left over")
    if not isinstance(call, dict):
        raise pickle.UnpicklingError("a snapshot is a dict")
    return call


_END = object()


def record_frame(seq: int, payload: bytes) -> bytes:
    return RECORD_HEADER.pack(seq, len(payload)) + payload


def length_frame(message: "ChildConfig | Report") -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH_HEADER.pack(len(payload)) + payload


@dataclass(frozen=True)
class ChildConfig:
    """What the child needs to publish as the in-thread publisher would (sent as the first frame,
    not in its environment or command line, where other users of the machine could read it)."""

    kafka: KafkaSettings
    topic: str
    spool_dir: Path
    spool_max_bytes: int
    options: PublisherOptions
    gateway_id: str
    run_id: str
    """Names the host process: with a call's sequence number, the stable id of an event whose call
    names no id (`fallback_id`)."""
    close_s: float = 25.0
    """How long the child's close may take once its stdin ends: Kafka is tried for all of it but
    the part kept for spooling what is left (`publisher.spool_reserve`)."""
    each_call: bool = True
    """Report what each event accounts (`Report.recorded`: the proxy's key spend needs each);
    else only how many events and the sum of their costs (`Report.count`, `Report.cost`), all
    the SDK's process budget needs, and the host accounts a report at once, not event by event."""


def fallback_id(run_id: str, seq: int) -> str:
    """An event id for a call without a call id or response id, the same however often its
    record is sent to a child (a random one would count a resent call twice)."""
    digest = run_id.replace("-", "")[:20] + f"{seq:012x}"
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


SentRecorded = tuple[int, str | None, str, float, str | None]
"""A `Recorded` in plain values, which unpickle several times faster than a named tuple of a
Decimal and a datetime: (sequence number, key hash, cost, occurred at as a timestamp, call id)."""


def sent_recorded(seq: int, recorded: Recorded) -> SentRecorded:
    call_id = recorded.call_id if recorded.call_id is None or len(recorded.call_id) <= MAX_CALL_ID else None
    return seq, recorded.key_hash, str(recorded.cost), recorded.occurred_at.timestamp(), call_id


def received_recorded(sent: SentRecorded) -> Recorded:
    _, key_hash, cost, occurred_at, call_id = sent
    return Recorded(key_hash, Decimal(cost), datetime.fromtimestamp(occurred_at, UTC), call_id)


@dataclass
class Report:
    """The child's progress: every call up to `handled` (a sequence number) is delivered to Kafka,
    written to the spool, or counted as lost; `recorded` holds what the host accounts of each
    event built since the previous report, by sequence number."""

    handled: int
    spool_empty: bool
    kafka_down: bool
    recorded: list[SentRecorded] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    """Increments since the previous report: `published`, `spooled`, `build_errors`, `lost:<reason>`;
    and `spool_bytes`, a level."""
    count: int = 0
    """Without `ChildConfig.each_call`: how many events `recorded` would have held."""
    cost: str = "0"
    """Without `ChildConfig.each_call`: the exact sum (`add_costs`) of their costs."""
