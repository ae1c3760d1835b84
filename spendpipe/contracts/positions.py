"""Where a record sits on a topic, and which of two records a reader can tell came later.

Records of one key go to one partition, in offset order; a reader can order two records only
within a partition. A record in another partition than the one known is taken as after it: it
was not written by the key's own writer in the key's order (a replay written elsewhere, or a
partition added since), so the reader must judge it on its content (its version), never pass it
over as read before.
"""

from typing import TypeAlias

Position: TypeAlias = tuple[int, int]
"""A record's (partition, offset)."""


def after(position: Position, known: Position | None) -> bool:
    """Whether `position` is not known to come before, or be, `known` (None: no position known):
    it is later in the same partition, or in another one."""
    return known is None or known[0] != position[0] or position[1] > known[1]
