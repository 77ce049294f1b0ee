"""Small text helpers every wing shares: did-you-mean hints for error messages and file-name slugs."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def slug(text: object, default: str = "x") -> str:
    """A file-name-safe version of `text`: runs of anything but letters, digits, `_` and `.` become one `-`
    ("imagefolder:/data/x" -> "imagefolder-data-x")."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", str(text)).strip("-") or default
