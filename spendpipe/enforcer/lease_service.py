"""The lease desk's wiring in the enforcer: lease requests in from `spend.lease_requests`,
signed grants out on `spend.leases` (docs/leases.md).

Requests are read as raw bytes and validated here, one by one: a record that is not a readable
`LeaseRequest` is counted in `records_rejected{topic, reason="unreadable"}` and logged, and the
rest of the batch goes on. The desk's own refusals (a return without the chain's secret, a
request naming another gateway's chain) count as `reason="forged"`. After budget changes the
tick asks the desk to revoke the chains whose caps changed.

A batch is answered in one turn of the store thread, and its grants are all handed to the
producer before any acknowledgement is awaited. The store thread is shared with the aggregator's
flushes and the enforcer's judgements (one chDB engine per process): one turn per request made
each request of a batch wait behind whatever the store had queued meanwhile, and each grant
waited for the broker before the next request was read.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from spendpipe.contracts.leases import GRANT_MESSAGE_TYPE, LeaseGrant, LeaseRequest
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.lease_spend import ChainSpend
from spendpipe.enforcer.leases import LeaseDesk
from spendpipe.enforcer.metrics import EnforcerMetrics
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.enforcer.targets import Target
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.raw_batches import records, text_headers_only, undecoded
from spendpipe.store.totals import Measurement, SpendTotals

log = logging.getLogger(__name__)

REQUESTS_PER_BATCH = 500


class LeaseService:
    def __init__(
        self,
        *,
        settings: EnforcerSettings,
        broker: KafkaBroker,
        clickhouse: ClickhouseStore,
        enforcer: Enforcer,
        metrics: EnforcerMetrics,
        clock: Callable[[], float],
        ready: asyncio.Event,
    ) -> None:
        self._ready = ready
        self._last_expiry: float | None = None
        self._clickhouse = clickhouse
        self._metrics = metrics
        self._topic = settings.topics.lease_requests
        totals = SpendTotals(sql=clickhouse, calendar=settings.calendar)

        def measure(target: Target, now: int) -> list[Measurement]:
            return totals.measure_many([target], now)[0]

        self.desk = LeaseDesk(
            book=enforcer.book,
            measure=measure,
            counted=ChainSpend(clickhouse=clickhouse).counted,
            settings=settings.leases,
            clock=clock,
        )
        self._signer = settings.signing.signer()
        self._grants = broker.publisher(
            settings.topics.leases,
            title="spend.leases",
            description="LeaseGrant v1: a slice of a budget's headroom lent to one gateway chain; signed.",
            schema=LeaseGrant,
        )
        broker.subscriber(
            settings.topics.lease_requests,
            group_id=f"{settings.enforcer_group_id}-leases",
            auto_offset_reset="latest",
            batch=True,
            max_records=REQUESTS_PER_BATCH,
            fetch_max_wait_ms=20,
            parser=text_headers_only,
            decoder=undecoded,
            no_reply=True,  # FastStream would publish to the topic a record's `reply_to` header names
            title="spend.lease_requests (enforcer)",
            description="LeaseRequest v1: gateways ask for, or return, slices of a leased budget's headroom.",
        )(self.on_requests)

    async def on_requests(self, message: KafkaMessage) -> None:
        await self._ready.wait()  # the budgets are read
        requests = []
        for record in records(message):
            try:
                requests.append(LeaseRequest.model_validate_json(record.value or b""))
            except ValidationError as error:
                self._metrics.records_rejected.labels(topic=self._topic, reason="unreadable").inc()
                log.error("ignoring an unreadable lease request: %s", error.errors(include_input=False)[:3])
        rejected = self.desk.rejected
        grants = await self._clickhouse.run(self._answer, requests)
        if self.desk.rejected > rejected:
            self._metrics.records_rejected.labels(topic=self._topic, reason="forged").inc(self.desk.rejected - rejected)
        await asyncio.gather(*[await self._publish(grant) for grant in grants])

    def _answer(self, requests: list[LeaseRequest]) -> list[LeaseGrant]:
        """On the store thread: the desk's grants answering `requests`, in their order."""
        return [grant for grant in map(self.desk.handle, requests) if grant is not None]

    def on_past_grant(self, record: TopicRecord) -> None:
        """Read back at start (`resume`): note the latest expiry among the grants on the topic.
        Unreadable records are skipped. Signatures are not checked: a forged grant can only make
        the desk wait longer, never longer than it waits without this (`LeaseDesk.resume`), and
        none can hide the real grants, which are all read."""
        try:
            grant = LeaseGrant.model_validate_json(record.value or b"")
        except ValidationError:
            return
        expiry = grant.expires_at.timestamp()
        if self._last_expiry is None or expiry > self._last_expiry:
            self._last_expiry = expiry

    def resume(self) -> None:
        """After the grants topic was read to its end: lend as soon as the chains it shows lapsed."""
        self.desk.resume(self._last_expiry)
        log.info("lease desk lends %s", "now" if self.desk.lending() else "once its predecessor's chains lapsed")

    async def after_budget_changes(self) -> None:
        """Revoke the chains whose caps changed; drop those that lapsed."""
        for grant in await self._clickhouse.run(self.desk.revoke_changed):
            await self.send(grant)
        self.desk.sweep()

    async def send(self, grant: LeaseGrant) -> None:
        await (await self._publish(grant))

    async def _publish(self, grant: LeaseGrant) -> "asyncio.Future[Any]":
        """Hand `grant`, signed, to the producer; the future ends once the broker took it. Grants
        handed over one after the other keep their order within a target's partition."""
        key, value = grant.key.encode(), grant.model_dump_json().encode()
        headers = {name: text.decode() for name, text in self._signer.headers(GRANT_MESSAGE_TYPE, key, value)}
        return await self._grants.publish(value, key=key, headers=headers, no_confirm=True)
