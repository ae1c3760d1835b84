"""Where each key's decision last landed on the decisions topic: a record that is not the decision
and sits after that position is the key's last record (to publish over); one before it is the
enforcer's history read late; while a send awaits its acknowledgement, the records read meanwhile
wait for it."""

from spendpipe.enforcer.decision_positions import DecisionPositions

KEY = "team:eng"


def test_a_record_after_where_the_decision_landed_is_the_keys_last_record() -> None:
    positions = DecisionPositions()
    positions.holds(KEY, (0, 10))
    assert positions.overwritten(KEY, (0, 11))


def test_a_record_before_or_at_where_the_decision_landed_is_its_history() -> None:
    positions = DecisionPositions()
    positions.holds(KEY, (0, 10))
    assert not positions.overwritten(KEY, (0, 9))
    assert not positions.overwritten(KEY, (0, 10))


def test_the_position_only_moves_forward() -> None:
    positions = DecisionPositions()
    positions.holds(KEY, (0, 10))
    positions.holds(KEY, (0, 4))  # the decision's own earlier record, read again after a reconnect
    assert not positions.overwritten(KEY, (0, 7))
    positions.holds(KEY, (0, 12))
    assert not positions.overwritten(KEY, (0, 11))
    assert positions.overwritten(KEY, (0, 13))


def test_a_key_whose_decision_was_never_seen_landing_is_overwritten_by_any_record() -> None:
    positions = DecisionPositions()
    positions.holds("team:other", (0, 10))
    assert positions.overwritten(KEY, (0, 0))


def test_a_record_in_another_partition_is_taken_as_after() -> None:
    positions = DecisionPositions()
    positions.holds(KEY, (1, 10))
    assert positions.overwritten(KEY, (0, 0))


def test_an_acknowledged_send_is_where_the_decision_landed() -> None:
    positions = DecisionPositions()
    positions.holds(KEY, (0, 3))
    positions.sending(KEY)
    assert not positions.sent(KEY, (0, 10))
    assert not positions.overwritten(KEY, (0, 9))  # read late: before the send
    assert positions.overwritten(KEY, (0, 11))


def test_a_record_read_while_a_send_awaits_its_acknowledgement_is_judged_by_where_the_send_landed() -> None:
    after, before = DecisionPositions(), DecisionPositions()
    for positions in (after, before):
        positions.holds(KEY, (0, 3))
        positions.sending(KEY)
        assert not positions.overwritten(KEY, (0, 5))  # after the last known position, but the send may follow it
    assert after.sent(KEY, (0, 4))  # it did not: the record is the key's last
    assert not before.sent(KEY, (0, 6))  # it did


def test_the_latest_record_read_while_awaiting_is_the_one_judged() -> None:
    positions = DecisionPositions()
    positions.sending(KEY)
    assert not positions.overwritten(KEY, (0, 9))
    assert not positions.overwritten(KEY, (0, 2))  # history read late (a reconnect), after the later one
    assert positions.sent(KEY, (0, 8))


def test_records_read_after_a_failed_send_wait_for_the_next_acknowledged_one() -> None:
    replayed_first, replayed_after = DecisionPositions(), DecisionPositions()
    for positions in (replayed_first, replayed_after):
        positions.holds(KEY, (0, 3))
        positions.sending(KEY)  # its send fails: no acknowledgement comes for it
        assert not positions.overwritten(KEY, (0, 7))
        positions.sending(KEY)  # the tick publishes it again
    assert not replayed_first.sent(KEY, (0, 8))  # the decision landed after the record
    assert not replayed_after.overwritten(KEY, (0, 9))
    assert replayed_after.sent(KEY, (0, 8))  # the record landed after it
    assert replayed_after.overwritten(KEY, (0, 10))  # awaiting nothing now: a record is judged as it is read
