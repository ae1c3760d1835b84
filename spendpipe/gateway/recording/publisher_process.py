"""Publishing from a subprocess, so the gateway process spends almost nothing per call.

In-thread (`publisher.py`), building an event (identity, labels, pydantic) and delivering it
(aiokafka) cost about 110 µs of CPU per call on a thread of the gateway process, holding the
GIL its requests need. Here the request path only pickles the few fields the event is built from
(`wire.snapshot`, a few µs) and appends them to a queue. One thread of the gateway process, asleep
while there is nothing to do and woken by the hand-over that finds it so, writes what gathered
(`linger_s`) to a child process's stdin in one write, whose system call releases the GIL. The
child (`publisher_child.py`) builds, delivers and spools, with the in-thread publisher's code.

What the gateway process keeps:
* **no loss, no double count.** A call stays in memory until the child reports it handled
  (delivered, spooled or counted as lost). A child that dies is started again and sent every call
  it had not reported, in order; their events get the same event ids (the call's ids, or one made
  of this process's run id and the call's sequence number) and the same content (a time the call
  does not name is the one `wire.snapshot` recorded here), so a call the dead child had
  delivered but not reported is a duplicate the aggregator drops, as for a spool replayed after a
  crash. What a call accounts here (`account`: the count, the key's and the process's spend) is
  taken from the report that hands it, so once. In SDK mode (`each_call` off), where no response
  carries a key's spend, a report hands its events' count and summed cost instead (`account_sum`).
* **the spool** is the child's (the same directory and bound). A child left running after this
  process died may still use it beside the next one's: the spool locks every use (`spool.py`).
* **`close()`** sends the rest, closes the child's stdin and waits for it to deliver or spool
  everything and exit; **`wait_idle()`** waits for the reports, without lingering.
* **metrics**: the child reports its counters; they are added to this process's.
* **the child** is started with `close_fds` (it holds only its stdin, stdout and stderr), and
  ends when its stdin ends, also when this process dies: it then delivers what it holds and exits.
* **a fallback** (`SPENDPIPE_PUBLISHER=auto`): where no child can be started (`sys.executable` is
  not a Python interpreter, as under uWSGI, whose binary must never be run as one; or the first
  child does not send its start handshake, its first report, within `HANDSHAKE_S`), one warning is
  logged and the calls are built and delivered by the in-thread publisher (`fallback`) instead:
  those handed over already, and every later one.
"""

import asyncio
import atexit
import collections
import contextlib
import functools
import logging
import math
import os
import pickle
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import spendpipe
from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.event_builder import Recorded
from spendpipe.gateway.recording.publisher import EventPublisher, HandOver, PublisherOptions
from spendpipe.gateway.recording.publisher_child import build_sent
from spendpipe.gateway.recording.wire import (
    LENGTH_HEADER,
    MAX_FRAME,
    ChildConfig,
    Report,
    built_snapshot,
    length_frame,
    received_recorded,
    record_frame,
    snapshot,
)
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.kafka import KafkaSettings

log = logging.getLogger(__name__)

CHILD_MODULE = "spendpipe.gateway.recording.publisher_child"
CHILD_LINGER_S = 0.0
"""The child's own linger: none, as calls reach it gathered already (one write per `linger_s`
here, read in one or a few pipe reads there). 5 ms before 2026-12-03: the wait at the end of
each `wait_idle` (and each call's way to Kafka) was 12 ms at the median, against 6 ms without."""
CHILD_CLOSE_S = 25.0
"""How long a child's close may take (`ChildConfig.close_s`): less than `close()`'s 30 s, so it
has spooled what Kafka did not take before this process stops waiting for it."""

REPORT_SILENCE_S = 60.0
"""How long a child may hold calls without reporting before it is taken as hung, ended and
started again (its calls go to the next). A child reports each batch as it is delivered, spooled
or lost, within `delivery_timeout_s` (10 s) even when Kafka hangs."""

HANDSHAKE_S = 30.0
"""How long the first child may take to send its first report (its imports, on a loaded machine)
before it is taken as one that cannot start."""

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(spendpipe.__file__)))
_INTERPRETER = re.compile(r"(python|pypy)[0-9.]*[a-z]?(\.exe)?")

MAX_RESTART_BACKOFF_S = 30.0
"""A child that keeps dying is started again at most this often (and the wait doubles to it)."""
MAX_RECORD = (1 << 32) - 1
"""A snapshot's length must fit the frame's 4 bytes; a larger one (a client's gigabytes in a field)
is counted as `unbuildable` rather than sent."""

Call = tuple[int, bytes]
"""(sequence number, snapshot)"""


class ProcessPublisher(HandOver[tuple[int, bytes]]):
    """Same lifecycle as `EventPublisher`: nothing starts in `__init__`, `start()` (or the first
    call) starts the thread and the child, `close()` delivers and stops, also at exit."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        spool_dir: Path,
        spool_max_bytes: int,
        gateway_id: str,
        metrics: GatewayMetrics,
        options: PublisherOptions,
        restart_backoff_s: float = 0.5,
        child_close_s: float = CHILD_CLOSE_S,
        fallback: Callable[[], EventPublisher] | None = None,
        each_call: bool = True,
    ) -> None:
        """`fallback`: the in-thread publisher to use where no child can be started (None: none,
        a child is tried again and again). `each_call`: `account` each event (the proxy's key
        spend needs each); without it the child sums its reports' events and `account_sum` takes
        their count and cost at once."""
        self._config = ChildConfig(
            kafka=kafka,
            topic=topic,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            options=PublisherOptions(
                queue_size=2 * options.queue_size,  # never the child's limit: this process bounds what it sends
                batch_size=options.batch_size,
                linger_s=min(options.linger_s, CHILD_LINGER_S),
                delivery_timeout_s=options.delivery_timeout_s,
                retry_backoff_s=options.retry_backoff_s,
            ),
            gateway_id=gateway_id,
            run_id=uuid.uuid4().hex,
            close_s=child_close_s,
            each_call=each_call,
        )
        super().__init__(metrics=metrics, background=BackgroundLoop(name="spendpipe-publisher", main=self._run))
        self._options = options
        self._restart_backoff_s = restart_backoff_s
        self.account: Callable[[Recorded], None] = _ignore
        """What the gateway keeps of each recorded event; called on this publisher's thread."""
        self.account_sum: Callable[[int, Decimal], None] = _ignore_sum
        """Without `each_call`: what it keeps of a report's events, their count and summed cost."""
        self._sent: collections.deque[Call] = collections.deque()
        """Written to the child, not reported handled yet (this publisher's thread only)."""
        self._child_handled = 0
        self._spool_empty = True
        self._kafka_down = False
        self._flushing = 0
        self._closing = threading.Event()
        self._closed = False
        self._close_by = math.inf
        """When `close()` stops waiting (monotonic): a fallback taken after it began closes by then."""
        self.child_pid: int | None = None
        self.restarts = 0
        self._fallback = fallback
        self._inline: EventPublisher | None = None
        """The in-thread publisher fallen back to: every call goes to it."""
        self._handshook = False
        self._reading: asyncio.Timeout | None = None
        """The deadline of the report being waited for (`_report_due`), while one is."""

    def start(self) -> None:
        """Start the thread and the child now (its imports and its Kafka connection are then not
        paid by the first call)."""
        self._start()

    def record(self, kwargs: Any) -> None:
        """The request path: snapshot a logged call and hand it over; never blocks or raises."""
        self._hand_over(snapshot, kwargs)

    def publish(self, event: SpendEvent) -> None:
        """Hand over an event built already (the child publishes it as it is; nothing is
        accounted); never blocks or raises."""
        self._hand_over(built_snapshot, event)

    def _hand_over(self, encode: Callable[[Any], bytes], item: Any) -> None:
        self._start()
        if self._closed:
            self._lose(1, "closed")
            return
        if len(self._queue) + len(self._sent) >= self._options.queue_size:
            self._lose(1, "queue_full")
            return
        try:
            payload = encode(item)
        except Exception:  # not expected of what LiteLLM hands over; never raised into LiteLLM
            log.exception("spendpipe could not snapshot a logged call")
            self._lose(1, "unbuildable")
            return
        if len(payload) > MAX_RECORD:
            self._lose(1, "unbuildable")
            return
        with self._submitting:
            self._last_submitted += 1
            self._queue.append((self._last_submitted, payload))
        if self._inline is not None:  # checked after the append: a fallback meanwhile still gets it
            self._to_inline(self._inline)
        elif self._ended:
            self._lose_late()
        elif self._asleep:
            self._wake_up()

    def wait_idle(self, timeout: float) -> bool:
        """Block until every call handed over so far is handled by the child (delivered, spooled or
        lost) and the spool is empty unless Kafka is down; True when that happened in time. What
        is queued is sent at once, without lingering."""
        target, deadline = self._last_submitted, time.monotonic() + timeout
        with self._progress:
            self._flushing += 1
        try:
            self._wake_up()
            with self._progress:
                idle = self._progress.wait_for(
                    lambda: (
                        self._inline is not None
                        or (self._handled >= target and (self._spool_empty or self._kafka_down))
                    ),
                    timeout,
                )
        finally:
            with self._progress:
                self._flushing -= 1
        inline = self._inline
        if inline is None:
            return idle
        self._to_inline(inline)  # `_fall_back` may not have moved the queue yet: then it is counted there
        return inline.wait_idle(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 30.0) -> bool:
        """Send what is queued, let the child deliver or spool everything and exit; True when it
        did within `timeout`."""
        deadline = time.monotonic() + timeout
        self._close_by = deadline
        self._closed = True
        self._closing.set()
        self._wake_up()
        stopped = self._background.stop(timeout, cancel=False)
        inline = self._inline
        return inline.close(max(0.0, deadline - time.monotonic())) and stopped if inline is not None else stopped

    @property
    def running(self) -> bool:
        inline = self._inline
        return inline.running if inline is not None else self._background.alive

    @property
    def fell_back(self) -> bool:
        """No child could be started: the in-thread publisher publishes instead."""
        return self._inline is not None

    @property
    def _spool(self) -> "ReportedSpool":
        """The child's spool, as its last report left it (the in-thread publisher's `_spool`)."""
        inline = self._inline
        return ReportedSpool(empty=inline._spool.empty if inline is not None else self._spool_empty)

    def _fall_back(self, why: str) -> None:
        """Publish from a thread of this process from now on (`fallback`), starting with the calls
        handed over already."""
        assert self._fallback is not None
        log.warning(
            "spendpipe cannot start its publisher process (%s): publishing from a thread of this process instead",
            why,
        )
        inline = self._fallback()
        inline.start()
        atexit.unregister(inline.close)  # closed by this publisher's close, which waits for it
        self._queue.extendleft(reversed(self._sent))
        self._sent.clear()
        self._inline = inline
        self._to_inline(inline)
        with self._progress:
            self._progress.notify_all()  # `wait_idle` waits on the fallback from now on
        if self._closing.is_set():
            # `close()` began before the fallback (a first child that never said it started), and
            # may have stopped waiting: close the fallback here, by the time `close()` was given,
            # spooling at once what Kafka cannot take by then (its close waits for nothing else)
            inline.close(max(0.0, self._close_by - time.monotonic()))

    def _to_inline(self, inline: EventPublisher) -> None:
        for seq, payload in self._take(len(self._queue) + 1):
            inline.publish_deferred(functools.partial(self._build_here, seq, payload))

    def _build_here(self, seq: int, payload: bytes) -> SpendEvent | None:
        """A call's event built as the child would build it, on the fallback's thread, accounted."""
        config = self._config
        built = build_sent(seq, payload, gateway_id=config.gateway_id, run_id=config.run_id, metrics=self._metrics)
        if built.recorded is not None:
            try:
                self.account(built.recorded)
            except Exception:
                log.exception("spendpipe could not account a recorded event")
        return built.event

    def _cannot_start(self) -> str | None:
        """Why no child can be started, while the fallback may still be taken; None otherwise."""
        if self._fallback is None or self._handshook:
            return None
        if not python_interpreter(sys.executable):
            return f"sys.executable {sys.executable!r} is not a Python interpreter"
        return None

    async def _run(self) -> None:
        try:
            await self._children()
        finally:
            if self._inline is None:  # fallen back: the fallback's thread takes what is handed over
                self._queue.extendleft(reversed(self._sent))  # not reported by a child: lost (`_end`)
                self._sent.clear()
                self._end()

    async def _children(self) -> None:
        self._loop = asyncio.get_running_loop()
        backoff = self._restart_backoff_s
        while True:
            if self._closed_out():
                return
            if (why := self._cannot_start()) is not None:
                self._fall_back(why)
                return
            started = time.monotonic()
            try:
                child = await self._spawn()
            except Exception as error:
                if self._fallback is not None and not self._handshook:
                    self._fall_back(f"{error!r}")
                    return
                log.error("spendpipe could not start its publisher process: %r", error)
                await self._pause(backoff)
                backoff = min(2 * backoff, MAX_RESTART_BACKOFF_S)
                continue
            await self._serve(child)
            code = await child.wait()
            if self._fallback is not None and not self._handshook:
                self._fall_back(f"its first child ended ({code}) before its start handshake")
                return
            if self._closed_out():
                return
            self.restarts += 1
            log.warning(
                "spendpipe's publisher process %s ended (%s) with %d call(s) unreported: starting another",
                child.pid,
                code,
                len(self._sent),
            )
            if time.monotonic() - started < MAX_RESTART_BACKOFF_S:  # one that dies soon: not in a tight loop
                await self._pause(backoff)
                backoff = min(2 * backoff, MAX_RESTART_BACKOFF_S)
            else:
                backoff = self._restart_backoff_s

    def _closed_out(self) -> bool:
        """Closing, and nothing is left to send or `close()`'s time is out: no child is started
        again (what is left is counted as lost by `_end`)."""
        if not self._closing.is_set():
            return False
        return not (self._sent or self._queue) or time.monotonic() >= self._close_by

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` before the next child, at most until `close()`'s deadline: a child that
        keeps dying is started again until then, never after (`close()` wakes this wait)."""
        until = time.monotonic() + seconds
        while (left := min(until, self._close_by) - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._wake.wait()

    async def _spawn(self) -> asyncio.subprocess.Process:
        root = _PACKAGE_ROOT  # the child imports the spendpipe this process runs
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            CHILD_MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            close_fds=True,
            env=env,
        )
        self.child_pid = child.pid
        self._child_handled = 0
        self._queue.extendleft(reversed(self._sent))  # unreported: sent again, in order, first
        self._sent.clear()
        return child

    async def _serve(self, child: asyncio.subprocess.Process) -> None:
        """Until the child's reports end (it exited, or died)."""
        reader = asyncio.ensure_future(self._read(child))
        writer = asyncio.ensure_future(self._write(child))
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if writer.done() and not writer.cancelled() and writer.exception() is not None:
            log.warning("spendpipe could not write to its publisher process: %r", writer.exception())
            _kill(child)  # a child that would wait for calls no one writes: its reports end
        await reader  # until the child's stdout ends: it exited (after `close()`) or died
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        _kill(child)  # its reports ended, so it cannot be told anything more

    async def _write(self, child: asyncio.subprocess.Process) -> None:
        stdin = child.stdin
        assert stdin is not None
        stdin.write(length_frame(self._config))
        while True:
            calls = self._take(self._options.batch_size)
            if calls:
                self._sent.extend(calls)
                self._expect_report()
                stdin.write(b"".join(record_frame(seq, payload) for seq, payload in calls))
                await stdin.drain()
                if len(self._queue) < self._options.batch_size:
                    await self._linger()
                continue
            if self._closing.is_set() and not self._queue:  # one handed over before `close()` is sent
                stdin.close()
                await stdin.wait_closed()
                return
            await self._sleep()

    async def _linger(self) -> None:
        """Let more calls gather, unless someone waits (`wait_idle`, `close`: each says so before it
        wakes this thread, so a wake-up cleared here is seen in the flags)."""
        self._wake.clear()
        if self._flushing or self._closing.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._options.linger_s):
                await self._wake.wait()

    async def _sleep(self) -> None:
        self._asleep = True
        if self._queue or self._closing.is_set():
            self._asleep = False
            return
        try:
            await self._wake.wait()
        finally:
            self._asleep = False
            self._wake.clear()
        await self._linger()

    def _report_due(self) -> float | None:
        """When the next report must have come (the loop's clock), or None: the start handshake
        within `HANDSHAKE_S` where there is a fallback to take, then a report within
        `REPORT_SILENCE_S` while the child holds calls (`_expect_report` sets it when calls are sent
        to a child that held none)."""
        now = asyncio.get_running_loop().time()
        if not self._handshook:
            return now + HANDSHAKE_S if self._fallback is not None else None
        return now + REPORT_SILENCE_S if self._sent else None

    def _expect_report(self) -> None:
        reading = self._reading
        if reading is not None and reading.when() is None:
            reading.reschedule(asyncio.get_running_loop().time() + REPORT_SILENCE_S)

    async def _read(self, child: asyncio.subprocess.Process) -> None:
        stdout = child.stdout
        assert stdout is not None
        while True:
            try:
                try:
                    async with asyncio.timeout_at(self._report_due()) as self._reading:
                        (length,) = LENGTH_HEADER.unpack(await stdout.readexactly(LENGTH_HEADER.size))
                finally:
                    self._reading = None
                if length > MAX_FRAME:
                    raise ValueError(f"a report of {length} bytes")
                report = pickle.loads(await stdout.readexactly(length))  # noqa: S301  # from our own child
            except asyncio.IncompleteReadError:
                return  # the child ended; a report cut short is not taken
            except TimeoutError:
                if self._handshook:
                    log.error(
                        "spendpipe's publisher process sent no report for %.0f s while holding %d call(s):"
                        " ending it, the calls go to the next",
                        REPORT_SILENCE_S,
                        len(self._sent),
                    )
                else:
                    log.error("spendpipe's publisher process sent no start handshake in time")
                return  # `_serve` ends it
            except Exception as error:
                log.error("spendpipe could not read its publisher process's report: %r", error)
                return
            self._apply(report)

    def _apply(self, report: Report) -> None:
        self._handshook = True
        handled = max(0, min(report.handled - self._child_handled, len(self._sent)))
        self._child_handled = report.handled
        for _ in range(handled):
            self._sent.popleft()
        for recorded in report.recorded:
            try:
                self.account(received_recorded(recorded))
            except Exception:
                log.exception("spendpipe could not account a recorded event")
        if report.count:
            try:
                self.account_sum(report.count, Decimal(report.cost))
            except Exception:
                log.exception("spendpipe could not account %d recorded event(s)", report.count)
        self._count(report.counters)
        with self._progress:
            self._handled += handled
            self._spool_empty, self._kafka_down = report.spool_empty, report.kafka_down
            self._progress.notify_all()

    def _count(self, counters: dict[str, float]) -> None:
        metrics = self._metrics
        for name, value in counters.items():
            if name == "spool_bytes":
                metrics.spool_bytes.set(value)
            elif name == "events_published":
                metrics.published.inc(value)
            elif name == "events_spooled":
                metrics.spooled.inc(value)
            elif name == "event_build_errors":
                metrics.build_errors.inc(value)
            elif name.startswith("events_lost:"):
                metrics.lost.labels(reason=name.removeprefix("events_lost:")).inc(value)


@dataclass(frozen=True)
class ReportedSpool:
    empty: bool


def python_interpreter(path: str | None) -> bool:
    """`path` names a Python interpreter (`python3`, `python3.11`, `pypy3`, ...) that can be run:
    a child started with anything else (uWSGI's binary in `sys.executable`) must not be run."""
    if not path or not _INTERPRETER.fullmatch(os.path.basename(path).lower()):
        return False
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _ignore(recorded: Recorded) -> None:
    return None


def _ignore_sum(count: int, cost: Decimal) -> None:
    return None


def _kill(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
