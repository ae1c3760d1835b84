"""Attribution labels: the one rule that turns whatever a client or LiteLLM put in an attribution
field (the request's `user`, team, organisation, key alias, agent, session, model, provider,
call type, error class, request tags) into a value the `SpendEvent` contract accepts. A call's
cost is never dropped for its labels, and the pre-call checks (blocks, rate limits, session caps)
read the request's identity through the same function, so a customer is refused under the very
label its spend is counted under. docs/budgets.md states the rule for users.

1. None, "" and whitespace-only text are no label: the call counts towards the scopes it has.
2. Text loses leading and trailing whitespace, as LiteLLM strips the end user's id. A number is
   its `str` (7 -> "7", as LiteLLM makes it); true, false, JSON objects and arrays are canonical
   JSON (sorted keys, no spaces: `{"id":"acme"}` however the client ordered its keys). Anything
   else, or an object JSON cannot write, is the marker `<invalid:TYPE>`.
3. Characters that are not plain text (control characters such as NUL, newline and ESC,
   bidirectional overrides, the line and paragraph separators, lone surrogates that UTF-8 cannot
   encode) are written as their Python escapes (`\\x00`, `\\n`, `\\u202e`, `\\ud800`): a
   label is valid UTF-8, one line of a log, and reads in the order it is stored.
   Markup such as `[bold]` is kept as it is: it is text, and readers render labels as text.
4. A label longer than `MAX_LABEL` characters (the contract's cap) is its first `PREFIX`
   characters, `…#sha256:` and the first 16 hex digits of the SHA-256 of the whole label from
   step 3: 225 characters that name the same customer every time, and different customers that
   share a prefix apart.

The rule is idempotent (a label is its own label), so a value normalised twice reads the same.
"""

import hashlib
import json
import re
from collections.abc import Mapping

from spendpipe.contracts.scopes import MAX_TAGS, overflow_marker

MAX_LABEL = 256
"""`contracts.events.Label`'s `max_length`; tests/unit/test_labels.py holds the two together."""
PREFIX = 200
DIGEST_HEX = 16
UNKNOWN_MODEL = "unknown"

_NOT_PLAIN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
"""C0 and C1 controls and DEL; the bidirectional marks, overrides and isolates, which make text read
in another order than it is stored (the CLI escapes the same, spendpipe/admin/render.py); the line
and paragraph separators; lone surrogates."""


def label_of(value: object) -> str | None:
    """The label for an attribution value, by the rule above; never raises."""
    if value is None:
        return None
    text = (value if isinstance(value, str) else _text_of(value)).strip()
    if not (text.isascii() and text.isprintable()):  # the common case skips the regex: on every call
        text = _NOT_PLAIN.sub(_escape, text)
    if not text:
        return None
    if len(text) <= MAX_LABEL:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]
    return f"{text[:PREFIX]}…#sha256:{digest}"


def first_label(*values: object) -> str | None:
    """The label of the first value that has one, for fields read from several places."""
    for value in values:
        label = label_of(value)
        if label is not None:
            return label
    return None


def model_label(value: object) -> str:
    """The model is required: a value without a label is `unknown`."""
    return label_of(value) or UNKNOWN_MODEL


def tags_of(value: object) -> tuple[str, ...]:
    """Request tags: each a label (those without one dropped), each once in the order first
    given, at most `MAX_TAGS`: past it the last place holds the marker `<+N more>` (N the distinct
    tags left out), which names no tag scope (`contracts.scopes.attributed_tags`). A value that
    is not a list is one tag."""
    items = value if isinstance(value, list | tuple) else [value]
    tags = list(dict.fromkeys(label for label in map(label_of, items) if label is not None))
    if len(tags) <= MAX_TAGS:
        return tuple(tags)
    return (*tags[: MAX_TAGS - 1], overflow_marker(len(tags) - MAX_TAGS + 1))


def _text_of(value: object) -> str:
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # may raise: Python refuses ints of more than 4,300 digits
        if isinstance(value, bool | Mapping | list | tuple):
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_refuse)
    except (TypeError, ValueError, RecursionError):
        pass
    return f"<invalid:{type(value).__name__}>"


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")
