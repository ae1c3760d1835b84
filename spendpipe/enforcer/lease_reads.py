"""The lease desk's store reads for one batch of requests, made once per target: a target's caps
with their spend (`Measure`), and what the pipeline counted of each of its chains (`Counted`).

Each read is a ClickHouse query on the store thread that the aggregator's flushes and the
enforcer's judgements share, so a batch of many requests on one target (several gateways asking
at once) answered with two reads per request kept each gateway waiting for all the reads before
its own. The batch is answered as of one instant, `at`: the totals and the chains' counts are
read then, together, and what the pipeline counts later is read by the next batch. A chain that
began after `at` (in this batch) counts 0 without a read, and a chain's count up to an end after
`at` is its count up to `at`. An event dated after `at` (a gateway's clock running ahead, or a
writer of `spend.events` dating one up to the future allowance ahead, past the window's end,
where no total of this window holds it) counts for no chain until `at` passes it: it never
counts as spent from headroom the totals do not show spent, so the desk does not lend it again.
"""

from collections.abc import Callable, Sequence
from decimal import Decimal

from spendpipe.enforcer.targets import Target
from spendpipe.store.totals import Measurement

Measure = Callable[[Target, int], list[Measurement]]
"""A target's caps with their spend in the current windows, at a Unix second."""
Counted = Callable[[Target, Sequence[tuple[str, float, float | None]]], list[Decimal]]
"""For (gateway, start, end) triples: that gateway's spend on the target from the start until
the end (None: open)."""

ChainSpan = tuple[str, float, float | None]


class BatchReads:
    def __init__(self, *, measure: Measure, counted: Counted, at: float) -> None:
        self._measure = measure
        self._counted = counted
        self._at = at
        self._measured: dict[tuple[str, str], list[Measurement]] = {}
        self._counts: dict[tuple[str, str, ChainSpan], Decimal] = {}

    def measure(self, target: Target) -> list[Measurement]:
        key = (str(target.scope), target.model)
        if key not in self._measured:
            self._measured[key] = self._measure(target, int(self._at))
        return self._measured[key]

    def counted(self, target: Target, chains: Sequence[ChainSpan]) -> list[Decimal]:
        """As `Counted`, as of `at`."""
        scope, model = str(target.scope), target.model
        until = self._at + 1e-6  # ends are exclusive: an event dated at `at` counts
        spans = [(gateway, start, until if end is None or end > until else end) for gateway, start, end in chains]
        missing = list(dict.fromkeys(s for s in spans if s[1] <= self._at and (scope, model, s) not in self._counts))
        if missing:
            for span, spent in zip(missing, self._counted(target, missing), strict=True):
                self._counts[scope, model, span] = spent
        return [Decimal(0) if span[1] > self._at else self._counts[scope, model, span] for span in spans]
