"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (missing file, missing column, empty table, unwritable output...).

    The message is one line naming the file, column or row and the reason.
    """


class TrainingDiverged(InputError):
    """The loss became NaN or infinite (usually a learning rate far too high for the data)."""


def plural(n: int, noun: str) -> str:
    """A count with its noun, for messages: ``plural(1, "row")`` is '1 row', ``plural(3, "row")`` '3 rows'."""
    return f"{n} {noun}{'s' * (n != 1)}"
