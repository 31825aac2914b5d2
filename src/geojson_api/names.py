"""Safe dataset names: the only door from a URL to a file.

A dataset name is a short token of letters, digits, ``-``, ``_`` and single
inner dots. Anything else (slashes, backslashes, ``..``, a leading dot, ``%``,
NUL and other control characters, over-long names) is malformed and answered
with 400 before any file system call is made. Names that are well formed but
not published are answered with 404 by the catalog.
"""

from __future__ import annotations

import re

from .errors import InvalidName

MAX_NAME_LENGTH = 128
SUFFIXES = (".geojson", ".json")

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?=[A-Za-z0-9_-]))*")


def is_valid_name(name: str) -> bool:
    """True when ``name`` may name a dataset (and so a file in the data folder)."""
    if not name or len(name) > MAX_NAME_LENGTH or _NAME.fullmatch(name) is None:
        return False
    return not name.lower().endswith(SUFFIXES)


def parse_request_name(raw: str) -> str:
    """The dataset name in a URL segment, with an optional ``.geojson`` suffix removed.

    Raises :class:`InvalidName` (400) for anything that is not a safe name.
    """
    name = raw[: -len(".geojson")] if raw.endswith(".geojson") else raw
    if not is_valid_name(name):
        shown = raw if len(raw) <= 64 and raw.isprintable() else repr(raw[:64]) + "..."
        raise InvalidName(
            f"{shown!s} is not a valid dataset name: use letters, digits, '-', '_' "
            f"and single inner dots, at most {MAX_NAME_LENGTH} characters"
        )
    return name


def name_of_file(filename: str) -> str | None:
    """The dataset name a data-folder file publishes, or None if it publishes none."""
    for suffix in SUFFIXES:
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            return stem if is_valid_name(stem) else None
    return None
