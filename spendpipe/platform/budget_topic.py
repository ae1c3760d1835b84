"""Reading `spend.budgets`, as every reader of it does: a record counts only if an accepted key
signed it (`RecordVerifier`) and it is newer than what was read for its scope (`LatestBudgets`);
what is dropped is counted in the verifier's `records_rejected`, by reason."""

from spendpipe.contracts.budgets import BudgetChange, LatestBudgets
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.signing import RecordVerifier


class BudgetTopic:
    """Not locked: one reader thread reads."""

    def __init__(self, verifier: RecordVerifier) -> None:
        self._verifier = verifier
        self._latest = LatestBudgets()

    def read(self, record: TopicRecord) -> BudgetChange | None:
        """The change `record` makes, or None when it makes none."""
        if not self._verifier.accepts(record):
            return None
        change = self._latest.offer(record.key, record.value, (record.partition, record.offset))
        if isinstance(change, str):
            self._verifier.refuse(change, record)
            return None
        return change
