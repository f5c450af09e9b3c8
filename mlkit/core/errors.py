"""Errors that map to exit codes: 1 runtime failure, 2 usage or config, 3 bad input data."""

from __future__ import annotations


class MlkitError(Exception):
    """An error with a one-line message, an optional place and an optional fix."""

    exit_code = 1

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix

    def line(self) -> str:
        """Render `error: <what> (<where>). <fix>` on one line."""
        text = self.what.rstrip(".")
        if self.where:
            text += f" ({self.where})"
        text += "."
        if self.fix:
            text += " " + self.fix.strip()
        return "error: " + "; ".join(part.strip() for part in text.splitlines() if part.strip())


class UsageError(MlkitError):
    """A bad flag, config key or value, or a missing model: exit 2."""

    exit_code = 2


class DataError(MlkitError):
    """Input data that is missing, malformed or of the wrong kind: exit 3."""

    exit_code = 3


class RunFailure(MlkitError):
    """A run that broke on its own (NaN loss, internal state): exit 1."""

    exit_code = 1
