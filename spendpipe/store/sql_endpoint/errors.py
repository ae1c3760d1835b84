"""Errors as ClickHouse reports them, so its clients read ours as they read a server's."""

import re

_CODE = re.compile(r"Code: (\d+)\. DB::Exception: (.*?)(?: \(([A-Z_0-9]+)\))?(?: \(version [^)]*\))?\.?$", re.DOTALL)

_STATUS = {
    164: 403,  # READONLY
    497: 403,  # ACCESS_DENIED
    516: 401,  # AUTHENTICATION_FAILED
    194: 401,  # REQUIRED_PASSWORD
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    229: 413,  # QUERY_IS_TOO_LARGE
    62: 400,  # SYNTAX_ERROR
    115: 400,  # UNKNOWN_SETTING
    36: 400,  # BAD_ARGUMENTS
    73: 400,  # UNKNOWN_FORMAT
    471: 400,  # INVALID_SETTING_VALUE
    47: 400,  # UNKNOWN_IDENTIFIER
    46: 400,  # UNKNOWN_FUNCTION
    43: 400,  # ILLEGAL_TYPE_OF_ARGUMENT
}
"""HTTP status per ClickHouse error code, as ClickHouse's HTTP handler maps them; 500 otherwise."""


class ClickhouseError(Exception):
    """A refusal or failure, reported as `Code: N. DB::Exception: message. (NAME)`."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @property
    def status(self) -> int:
        return _STATUS.get(self.code, 500)

    def text(self) -> str:
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name})\n"

    @classmethod
    def from_engine(cls, error: Exception) -> "ClickhouseError":
        """chDB's error text, which already has ClickHouse's shape (sometimes nested twice)."""
        text = str(error).strip()
        while (match := _CODE.match(text)) and _CODE.match(match.group(2)):
            text = match.group(2)
        match = _CODE.match(text)
        if match is None:
            return cls(1000, "UNKNOWN_EXCEPTION", text or type(error).__name__)
        return cls(int(match.group(1)), match.group(3) or "UNKNOWN_EXCEPTION", match.group(2).rstrip("."))
