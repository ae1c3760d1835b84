"""The operator's commands, run as a user would: `spendpipe budgets set | apply | list | delete`
and `spendpipe blocks list`, against the real broker."""

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.topics import Topics
from tests.support.pipeline import read_topic
from tests.support.processes import run_cli
from tests.support.signing import publish_decisions, signing_from_environment, write_records


def spendpipe(topics: Topics, bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SPENDPIPE_TOPICS__BUDGETS": topics.budgets,
        "SPENDPIPE_TOPICS__DECISIONS": topics.decisions,
    }
    return run_cli(env, *args)


async def test_budgets_set_list_delete_and_a_refused_budget(kafka_broker: str, make_topics) -> None:
    topics = await make_topics(kafka_broker)

    refused = await asyncio.to_thread(
        spendpipe, topics, kafka_broker, "budgets", "set", "--scope", "team:eng", "--max-budget", "-3"
    )
    assert refused.returncode == 2
    assert "max_budget: Input should be greater than or equal to 0" in refused.stderr
    assert "nothing was published" in refused.stderr
    assert await read_topic(kafka_broker, topics.budgets, expected=0) == []

    done = await asyncio.to_thread(
        spendpipe,
        topics,
        kafka_broker,
        *("budgets", "set", "--scope", "team:eng", "--max-budget", "10", "--budget-duration", "24h"),
        *("--budget-limit", "30d=100", "--max-budget-in-team", "2", "--model-max-budget", "gpt-4o=5/1d"),
    )
    assert done.returncode == 0, done.stderr
    listed = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "list")
    assert "team:eng" in listed.stdout
    assert "100/30d" in listed.stdout
    assert "max_budget_in_team=2" in listed.stdout

    deleted = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "delete", "--scope", "team:eng")
    assert deleted.returncode == 0, deleted.stderr
    listed = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "list")
    assert "team:eng" not in listed.stdout


async def test_budgets_apply_a_yaml_file_all_or_nothing(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    topics = await make_topics(kafka_broker)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "litellm_settings:\n  max_budget: 100\n  budget_duration: 30d\n"
        "budgets:\n  - {scope: 'team:eng', max_budget: 10}\n"
        "  - {scope: 'team:ops', max_budget: 1, budget_duration: 2x}\n"
    )
    refused = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "apply", "--file", str(bad))
    assert refused.returncode == 2
    assert "budgets[1].budget_duration: unknown duration '2x'" in refused.stderr
    assert await read_topic(kafka_broker, topics.budgets, expected=0) == []

    good = tmp_path / "good.yaml"
    good.write_text(bad.read_text().replace("2x", "2w"))
    applied = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "apply", "--file", str(good))
    assert applied.returncode == 0, applied.stderr
    listed = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "list")
    assert all(scope in listed.stdout for scope in ("global", "team:eng", "team:ops"))


async def test_blocks_list_shows_what_is_in_force(kafka_broker: str, make_topics) -> None:
    topics = await make_topics(kafka_broker)
    now = datetime.now(UTC)
    decisions = [
        Decision(scope="team:eng", version=1, blocked=True, reason="over budget", window="24h",
                 expires_at=now + timedelta(hours=1), decided_at=now),
        Decision(scope="team:ops", version=1, blocked=True, reason="over budget", window="24h",
                 expires_at=now - timedelta(hours=1), decided_at=now - timedelta(days=1)),
        Decision(scope="key:" + "a" * 64, version=1, blocked=False, reason="within budget", decided_at=now),
    ]  # fmt: skip
    await publish_decisions(kafka_broker, topics.decisions, decisions)  # as the enforcer writes them
    # and a record signed by the enforcer's key that this version cannot read as a decision
    unreadable = b'{"schema_version": 1}'
    signer = signing_from_environment().signer()
    headers = signer.headers(DECISION_TYPE, b"team:new", unreadable)
    await write_records(kafka_broker, topics.decisions, [(b"team:new", unreadable, headers)])

    listed = await asyncio.to_thread(spendpipe, topics, kafka_broker, "blocks", "list")

    assert listed.returncode == 0, listed.stderr
    assert "team:eng" in listed.stdout
    assert "team:ops" not in listed.stdout  # expired
    assert "key:" not in listed.stdout  # not blocked
    assert "dropping unreadable records" in listed.stderr


async def test_budgets_set_rate_limits_and_a_refused_one(kafka_broker: str, make_topics) -> None:
    topics = await make_topics(kafka_broker)

    for scope, rpm, problem in (
        ("org:acme", "5", "rpm_limit: rate limits apply to agent, end_user, key, team, user scopes, not org"),
        ("team:eng", "0", "rpm_limit: Input should be greater than or equal to 1"),
    ):
        refused = await asyncio.to_thread(
            spendpipe, topics, kafka_broker, *("budgets", "set", "--scope", scope, "--rpm-limit", rpm)
        )
        assert refused.returncode == 2
        assert problem in refused.stderr
    assert await read_topic(kafka_broker, topics.budgets, expected=0) == []

    done = await asyncio.to_thread(
        spendpipe,
        topics,
        kafka_broker,
        *("budgets", "set", "--scope", "team:eng", "--rpm-limit", "100", "--tpm-limit", "5000"),
        *("--max-parallel-requests", "4", "--model-rpm-limit", "gpt-4o=10", "--model-tpm-limit", "gpt-4o=900"),
        *("--token-rate-limit-type", "output"),
    )
    assert done.returncode == 0, done.stderr
    listed = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "list")
    for shown in ("rpm_limit=100", "tpm_limit=5000", "max_parallel_requests=4", "token_rate_limit_type=output"):
        assert shown in listed.stdout
    assert "model_rpm_limit={'gpt-4o': 10}" in listed.stdout


async def test_hostile_scope_ids_print_literally_in_every_command(kafka_broker: str, make_topics) -> None:
    """An end customer's `user` field is theirs to choose: `[/]` is Rich's closing tag, and
    ESC [2J clears a terminal. The commands print both as written, and exit 0."""
    topics = await make_topics(kafka_broker)
    hostile = {"end_user:[/]": "end_user:[/]", "end_user:[red]admin[/red]\x1b[2J": "end_user:[red]admin[/red]\\x1b[2J"}

    for scope, seen in hostile.items():
        done = await asyncio.to_thread(
            spendpipe, topics, kafka_broker, "budgets", "set", "--scope", scope, "--max-budget", "5"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"budget of {seen} published\n"
    listed = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "list")
    assert listed.returncode == 0, listed.stderr
    assert "│ end_user:[/] " in listed.stdout
    assert "│ end_user:[red]admin[/red]\\x1b[2J " in listed.stdout
    assert "\x1b" not in listed.stdout

    now = datetime.now(UTC)
    blocked = Decision(scope="end_user:[/]", version=1, blocked=True, reason="[link=https://x]over[/link]\r",
                       window="24h", expires_at=now + timedelta(hours=1), decided_at=now)  # fmt: skip
    await publish_decisions(kafka_broker, topics.decisions, [blocked])
    blocks = await asyncio.to_thread(spendpipe, topics, kafka_broker, "blocks", "list")
    assert blocks.returncode == 0, blocks.stderr
    assert "│ end_user:[/] " in blocks.stdout
    assert "over" not in blocks.stdout  # the table leaves reasons out; JSON carries them, escaped
    as_json = await asyncio.to_thread(spendpipe, topics, kafka_broker, "blocks", "list", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert '"reason": "[link=https://x]over[/link]\\r"' in as_json.stdout


async def test_tag_and_provider_budgets_by_flag_and_in_litellms_provider_budget_config(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker)
    file = tmp_path / "providers.yaml"
    file.write_text(
        "router_settings:\n  provider_budget_config:\n"
        "    openai: {budget_limit: 0.5, time_period: 1d}\n    azure: {budget_limit: 100, time_period: 1mo}\n"
    )

    by_flag = await asyncio.to_thread(
        spendpipe, topics, kafka_broker,
        *("budgets", "set", "--scope", "tag:product:chat-bot", "--max-budget", "10", "--budget-duration", "1d"),
    )  # fmt: skip
    applied = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "apply", "--file", str(file))
    rate_limited = await asyncio.to_thread(
        spendpipe, topics, kafka_broker, "budgets", "set", "--scope", "provider:openai", "--rpm-limit", "5"
    )

    assert by_flag.returncode == 0, by_flag.stderr
    assert applied.returncode == 0, applied.stderr
    assert "2 budget(s) published" in applied.stdout
    assert rate_limited.returncode == 2
    assert "rpm_limit: rate limits apply to" in rate_limited.stderr
    listed = await asyncio.to_thread(spendpipe, topics, kafka_broker, "budgets", "list")
    for scope in ("tag:product:chat-bot", "provider:openai", "provider:azure"):
        assert scope in listed.stdout
    assert "0.5" in listed.stdout
