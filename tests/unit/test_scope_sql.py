"""The tag rule written in SQL appears in the rollup (through `scope_sql`) and, as static text, in
the migration that defines the `spend_by_tag` view: the two must be the same expression."""

from spendpipe.store.migrate import bundled_migrations
from spendpipe.store.scope_sql import ATTRIBUTED_TAGS


def test_the_spend_by_tag_view_attributes_tags_by_the_scopes_rule() -> None:
    (view,) = [
        statement
        for migration in bundled_migrations()
        if migration.version >= 9
        for statement in migration.statements
        if "VIEW spend_by_tag" in statement
    ]

    assert f"arrayJoin({ATTRIBUTED_TAGS}) AS tag" in view
