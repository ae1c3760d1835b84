"""The publisher child's reports: each hands back the calls handled since the previous one, with
the accounting of exactly those calls, so a call the host sends again after the child died is
accounted once (by the child that reports it handled); and a call sent again builds the same
event in the next child, so the aggregator drops it as a duplicate, never dead-letters it."""

import io
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from spendpipe.gateway.recording import event_builder
from spendpipe.gateway.recording.publisher import PublisherOptions
from spendpipe.gateway.recording.publisher_child import Child
from spendpipe.gateway.recording.wire import LENGTH_HEADER, ChildConfig, Report, snapshot
from spendpipe.platform.kafka import KafkaSettings
from tests.unit.test_event_builder import logging_object


def reports_of(sink: io.BytesIO) -> list[Report]:
    data, reports = sink.getvalue(), []
    while data:
        (length,) = LENGTH_HEADER.unpack_from(data)
        reports.append(pickle.loads(data[LENGTH_HEADER.size : LENGTH_HEADER.size + length]))
        data = data[LENGTH_HEADER.size + length :]
    return reports


def a_child(spool_dir: Path, sink: io.BytesIO, *, each_call: bool = True) -> Child:
    return Child(
        ChildConfig(
            kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),  # never started here
            topic="spend.events",
            spool_dir=spool_dir,
            spool_max_bytes=1 << 20,
            options=PublisherOptions(),
            gateway_id="g",
            run_id="ab" * 16,
            each_call=each_call,
        ),
        sink,
    )


def test_a_report_accounts_only_the_calls_it_hands_back(tmp_path: Path) -> None:
    sink = io.BytesIO()
    child = a_child(tmp_path, sink)
    calls = {
        seq: {
            "standard_logging_object": logging_object(litellm_call_id=f"call-{seq}"),
            "litellm_call_id": f"call-{seq}",
        }
        for seq in (7, 8)
    }
    for seq, call in calls.items():  # as the child's thread does: handed over, built, then handled
        child._seqs.append(seq)
        child._build(seq, snapshot(call))

    child._report((1, True, False))  # call 7 handled; call 8 built, not handled yet
    child._report((1, True, False))  # nothing new
    child._report((2, True, False))

    first, again, second = reports_of(sink)
    assert [(r[0], r[4]) for r in first.recorded] == [(7, "call-7")]
    assert again.recorded == []
    assert [(r[0], r[4]) for r in second.recorded] == [(8, "call-8")]
    assert (first.handled, second.handled) == (1, 2)


class AnHourLater(datetime):
    """The clock of a child started after the first one died."""

    @classmethod
    def now(cls, tz: Any = None) -> "AnHourLater":
        return cls.fromtimestamp(datetime.now(UTC).timestamp() + 3600, tz)


@pytest.mark.parametrize(
    "record",
    [
        logging_object(prompt_tokens="many"),  # its full event cannot be built: the fallback event
        logging_object(id=None, litellm_call_id=None, startTime=None, endTime=None),  # no ids, no times
    ],
)
def test_a_call_sent_again_to_the_next_child_builds_the_same_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: dict[str, Any]
) -> None:
    sent = snapshot({"standard_logging_object": record})
    first = a_child(tmp_path / "first", io.BytesIO())._build(41, sent)

    monkeypatch.setattr(event_builder, "datetime", AnHourLater)
    again = a_child(tmp_path / "next", io.BytesIO())._build(41, sent)

    assert first is not None
    assert again == first
    assert abs(first.occurred_at - datetime.now(UTC)) < timedelta(minutes=5)  # when it was recorded


def test_without_each_call_a_report_sums_only_the_calls_it_hands_back(tmp_path: Path) -> None:
    """SDK mode: a report carries how many events it accounts and their exact summed cost."""
    sink = io.BytesIO()
    child = a_child(tmp_path, sink, each_call=False)
    costs = {7: 0.1, 8: 0.2, 9: 0.000225}
    for seq, cost in costs.items():
        call = {"standard_logging_object": logging_object(litellm_call_id=f"call-{seq}", response_cost=cost)}
        child._seqs.append(seq)
        child._build(seq, snapshot(call))

    child._report((2, True, False))  # calls 7 and 8 handled; 9 built, not handled yet
    child._report((3, True, False))

    first, second = reports_of(sink)
    assert (first.recorded, first.count, first.cost) == ([], 2, "0.3")
    assert (second.recorded, second.count, second.cost) == ([], 1, "0.000225")
