"""Logging what whoever writes a topic can repeat without end (a record no reader can apply, an
announcement that does not parse): every occurrence counted, the first few logged, so a writer
that sends more cannot fill the log. A reader's metrics say how many there were in all."""

import logging


class FirstLogged:
    def __init__(self, logger: logging.Logger, most: int) -> None:
        self._logger = logger
        self._most = most
        self.count = 0
        """Occurrences so far, logged or not."""

    def error(self, message: str, *args: object) -> None:
        """Count one occurrence, and log it as `logger.error(message, *args)` while few."""
        self.count += 1
        if self.count <= self._most:
            last = "; no more of these are logged" if self.count == self._most else ""
            self._logger.error(message + "%s", *args, last)
