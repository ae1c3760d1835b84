"""Text from data as a person should see it: every character that would not print as itself
shown as a visible escape. The CLI (`admin.render`), the HTML report and the Slack text of the
notifier all print values a gateway's client chose (a `user`, a team id, a model name), and
each of them uses this one rule.

Escaped: C0 and C1 controls and DEL (`\\x1b` can restyle or clear a terminal, `\\r` rewrite a
line); every format character (Unicode's category Cf: the bidirectional marks, overrides and
isolates, so `team:\\u202egnp.exe` does not read as `team:exe.png`; zero-width space and
joiners, word joiner, BOM, soft hyphen, Unicode tags, interlinear annotations, the shaping and
joining controls of some scripts) and the other characters that print as nothing (variation
selectors, the combining grapheme joiner, Hangul fillers), with which `eng` and `eng` + U+200B
would be two scopes that look like one and tags carry hidden text; line and paragraph
separators; and lone surrogates (JSON's `\\ud800` makes one; no UTF-8 stream can carry it, so
printing it raises). Letters and symbols of every script print as they are.
"""

import re

_CONTROL = "\x00-\x1f\x7f-\x9f"
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f"
)
"""Every format character (category Cf) of the Unicode this Python knows, as ranges; the unit
tests check it against `unicodedata`, so a newer Unicode's additions are noticed."""
_INVISIBLE = "\u034f\u115f\u1160\u180b-\u180d\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef"
"""Marks and letters that print as nothing: variation selectors (Mongolian too), the combining
grapheme joiner, Hangul fillers."""
_OTHER = "\u2028\u2029\ud800-\udfff"
_HIDDEN = f"{_FORMAT}{_INVISIBLE}{_OTHER}"
_ESCAPED = re.compile(f"[{_CONTROL}{_HIDDEN}]")
_ESCAPED_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_HIDDEN}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(value: object, *, lines: bool = False) -> str:
    """`str(value)` with every such character replaced by its escape (`\\x1b`, `\\r`, `\\u200b`,
    `\\U000e0041`); with `lines`, line breaks stay (for our own multi-line messages)."""
    return (_ESCAPED_BUT_NEWLINE if lines else _ESCAPED).sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
