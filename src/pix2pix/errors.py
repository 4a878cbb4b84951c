"""User-facing errors.

Every error a user can fix by changing their input derives from `Pix2PixError`;
the CLI prints its message (which names the file or value and the fix) without a
traceback and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class Pix2PixError(Exception):
    """An error caused by the user's input, with a message that says how to fix it."""


class ConfigError(Pix2PixError):
    """An unknown preset, config key or invalid config value."""


class DataError(Pix2PixError):
    """An unreadable, unpaired or malformed dataset file."""


class CheckpointError(Pix2PixError):
    """A checkpoint that does not match the architecture it is loaded into."""


class TrainingDiverged(Pix2PixError):
    """A loss became NaN or infinite."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
