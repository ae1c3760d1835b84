"""The publisher subprocess: `python -m spendpipe.gateway.recording.publisher_child`, started by
`ProcessPublisher` (`publisher_process.py`), never by hand.

It reads a `ChildConfig` and then logged calls (`wire.py`) from its stdin, builds each call's event
(`event_or_fallback`, with an event id and a time that stay the same when the host sends the call
again),
and hands it to an `EventPublisher`, the in-thread publisher with its spool and its delivery,
running here instead of in the gateway process. As calls are handled (delivered, spooled or
counted as lost) it reports them on its stdout, with what the host accounts of each event and its
counters. A call the host has no report for is sent again to the next child if this one dies.

It ends when its stdin ends: the host closed it (`close()`), or the host died. Either way it
first delivers what it holds, for at most `ChildConfig.close_s` less the time kept for spooling,
and spools the rest. It ignores SIGINT, which a terminal sends to the whole
process group: the host's `close()` decides when it ends.
"""

import collections
import functools
import logging
import os
import pickle
import signal
import sys
import threading
from decimal import Decimal
from typing import BinaryIO, NamedTuple

from prometheus_client import CollectorRegistry

from spendpipe.contracts.events import SpendEvent, decode_event
from spendpipe.contracts.money import add_costs
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.event_builder import Recorded, event_or_fallback
from spendpipe.gateway.recording.publisher import EventPublisher
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.gateway.recording.wire import (
    BUILT,
    LENGTH_HEADER,
    RECORD_HEADER,
    ChildConfig,
    Report,
    SentRecorded,
    fallback_id,
    length_frame,
    recorded_at,
    restore,
    sent_recorded,
)

log = logging.getLogger("spendpipe.gateway.recording.publisher_child")

SPOOLING_S = 60.0
"""How long spooling what Kafka did not take by the end of the close may take (building and
writing at most a queue's worth of events)."""


class Child:
    def __init__(self, config: ChildConfig, reports: BinaryIO) -> None:
        self._config = config
        self._reports = reports
        self._metrics = GatewayMetrics(registry=CollectorRegistry())
        self._publisher = EventPublisher(
            kafka=config.kafka,
            topic=config.topic,
            spool=DiskSpool(directory=config.spool_dir, max_bytes=config.spool_max_bytes),
            metrics=self._metrics,
            options=config.options,
        )
        self._seqs: collections.deque[int] = collections.deque()
        """Sequence numbers of the calls handed over and not yet reported, in order."""
        self._recorded: collections.deque[SentRecorded] = collections.deque()
        self._counted: dict[str, float] = {}
        self._reported = 0
        self._write = threading.Lock()

    def run(self, source: BinaryIO) -> None:
        self._report(self._publisher.progress())  # the start handshake: this child runs and reports
        self._publisher.start()
        threading.Thread(target=self._report_progress, name="spendpipe-reports", daemon=True).start()
        buffer = bytearray()
        while chunk := source.read(1 << 16):
            buffer += chunk
            del buffer[: self._hand_over(buffer)]
        if not self._publisher.close(self._config.close_s):
            # Kafka's time ran out: what is left goes to the spool, which needs only the disk
            log.warning("spendpipe's publisher process is still spooling after %.0f s", self._config.close_s)
            self._publisher.close(SPOOLING_S)
        self._report(self._publisher.progress())

    def _hand_over(self, buffer: bytearray) -> int:
        """Hand over every whole frame in `buffer`; returns how many bytes they took."""
        at = 0
        while len(buffer) - at >= RECORD_HEADER.size:
            seq, length = RECORD_HEADER.unpack_from(buffer, at)
            end = at + RECORD_HEADER.size + length
            if end > len(buffer):
                break
            self._seqs.append(seq)
            payload = bytes(buffer[at + RECORD_HEADER.size : end])
            self._publisher.publish_deferred(functools.partial(self._build, seq, payload))
            at = end
        return at

    def _build(self, seq: int, payload: bytes) -> SpendEvent | None:
        built = build_sent(
            seq, payload, gateway_id=self._config.gateway_id, run_id=self._config.run_id, metrics=self._metrics
        )
        if built.recorded is not None:
            self._recorded.append(sent_recorded(seq, built.recorded))
        return built.event

    def _report_progress(self) -> None:
        progress = (0, True, False)
        while True:
            progress = self._publisher.wait_progress(progress)
            self._report(progress)

    def _report(self, progress: tuple[int, bool, bool]) -> None:
        with self._write:
            handled, spool_empty, kafka_down = progress
            handled = max(handled, self._reported)  # a report taken before the last one sent: never go back
            done = {self._seqs.popleft() for _ in range(handled - self._reported)}
            self._reported = max(self._reported, handled)
            recorded = []  # built in the order handed over, as the calls are handled: a prefix
            while self._recorded and self._recorded[0][0] in done:
                recorded.append(self._recorded.popleft())
            report = Report(
                handled=handled,
                spool_empty=spool_empty,
                kafka_down=kafka_down,
                recorded=recorded,
                counters=self._counters(),
            )
            if not self._config.each_call:
                report.recorded, report.count, report.cost = [], len(recorded), str(_sum_of_costs(recorded))
            self._reports.write(length_frame(report))
            self._reports.flush()

    def _counters(self) -> dict[str, float]:
        now: dict[str, float] = {}
        for counter in (self._metrics.published, self._metrics.spooled, self._metrics.build_errors, self._metrics.lost):
            for metric in counter.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        name = sample.name.removeprefix("spendpipe_gateway_").removesuffix("_total")
                        reason = sample.labels.get("reason")
                        now[f"{name}:{reason}" if reason else name] = sample.value
        changed = {name: value - self._counted.get(name, 0.0) for name, value in now.items()}
        self._counted = now
        counters = {name: delta for name, delta in changed.items() if delta}
        for metric in self._metrics.spool_bytes.collect():
            counters["spool_bytes"] = metric.samples[0].value
        return counters


class Built(NamedTuple):
    event: SpendEvent | None
    recorded: Recorded | None
    """What the gateway process accounts of the event (None: an event built there already)."""


def build_sent(seq: int, payload: bytes, *, gateway_id: str, run_id: str, metrics: GatewayMetrics) -> Built:
    """The event of call `seq` sent over the pipe (`wire.snapshot`, or `wire.built_snapshot`), as
    the child builds it, or the gateway process in its place (`ProcessPublisher`'s fallback)."""
    try:
        call = restore(payload)
    except Exception as error:  # not a snapshot: nothing to charge
        log.error("spendpipe could not read call %d from the gateway process: %r", seq, error)
        metrics.lost.labels(reason="uncharged").inc()
        return Built(None, None)
    if BUILT in call:  # `ProcessPublisher.publish`: built already, nothing to account
        return Built(decode_event(call[BUILT]), None)
    event = event_or_fallback(
        call,
        gateway_id=gateway_id,
        metrics=metrics,
        fallback_id=fallback_id(run_id, seq),
        recorded_at=recorded_at(call),
    )
    return Built(event, Recorded.of(event, call) if event is not None else None)


def _sum_of_costs(recorded: list[SentRecorded]) -> Decimal:
    total = Decimal(0)
    for _, _, cost, _, _ in recorded:
        total = add_costs(total, Decimal(cost))
    return total


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format=f"spendpipe-publisher[{os.getpid()}] %(levelname)s %(message)s"
    )
    reports = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to stderr, never into the reports
    source = os.fdopen(0, "rb", buffering=0)
    header = _read_exactly(source, LENGTH_HEADER.size)
    (length,) = LENGTH_HEADER.unpack(header)
    config = pickle.loads(_read_exactly(source, length))  # noqa: S301  # from the process that started this one
    if not isinstance(config, ChildConfig):
        raise SystemExit("spendpipe publisher: the first frame is not a ChildConfig")
    Child(config, reports).run(source)


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = source.read(size - len(data))
        if not chunk:
            raise SystemExit("spendpipe publisher: the gateway process went away before its config")
        data += chunk
    return data


if __name__ == "__main__":
    main()
