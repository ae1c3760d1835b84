"""The runner's FastStream app on a real broker when a service's start fails: the services that
had started are stopped all the same (FastStream runs no on_shutdown hook when an after-startup
hook raises), so the aggregator's consumer leaves its group with the process instead of holding
its partitions until its session timeout."""

import pytest
from faststream import FastStream

from spendpipe.platform.kafka import KafkaSettings, build_broker
from spendpipe.runner import run_to_the_end


async def test_services_started_before_one_that_failed_to_start_are_stopped(kafka_broker: str) -> None:
    app = FastStream(build_broker(KafkaSettings(bootstrap_servers=kafka_broker)))
    said: list[str] = []

    async def aggregator_start() -> None:
        said.append("aggregator started")

    async def enforcer_start() -> None:
        raise RuntimeError("topic spend.alerts does not exist")

    async def aggregator_stop() -> None:
        said.append("aggregator stopped")

    app.after_startup(aggregator_start)
    app.after_startup(enforcer_start)
    app.on_shutdown(aggregator_stop)

    with pytest.raises(RuntimeError, match="does not exist"):
        await run_to_the_end(app)
    assert said == ["aggregator started", "aggregator stopped"]


async def test_a_stop_that_fails_after_a_failed_start_leaves_the_starts_error_to_report(kafka_broker: str) -> None:
    app = FastStream(build_broker(KafkaSettings(bootstrap_servers=kafka_broker)))

    async def enforcer_start() -> None:
        raise RuntimeError("topic spend.alerts does not exist")

    async def aggregator_stop() -> None:
        raise ConnectionError("the broker went away")

    app.after_startup(enforcer_start)
    app.on_shutdown(aggregator_stop)

    with pytest.raises(RuntimeError, match="does not exist"):
        await run_to_the_end(app)
