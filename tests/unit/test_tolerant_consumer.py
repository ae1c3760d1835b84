"""What a `TolerantConsumer` refuses to be built with."""

import pytest

from spendpipe.platform.unreadable import TolerantConsumer


def test_a_tolerant_consumer_refuses_to_read_committed_only() -> None:
    # its raw fetch would blame an aborted transaction's batch that aiokafka never hands over
    with pytest.raises(ValueError, match="read_uncommitted"):
        TolerantConsumer("spend.events", isolation_level="read_committed")
