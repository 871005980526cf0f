"""The role directory: `role` and `status.json`, each replaced atomically.

Guaranteed: a reader never sees a partial file: each file is written to a temporary file
in the same directory, flushed, fsynced and renamed over the old one (rename is atomic on
POSIX file systems). `role` is written after `status.json`, so a reader that sees a new role
finds at least as new a status. Not guaranteed: the two files change at the same instant.

At run time this module loads nothing of the sidecar, nor `typing`: kazoo's recipe in the
benchmarks writes its role file with `write_atomically` too (the same steps, so failovers
compare like with like), and must not pay for the sidecar's modules at a cold start.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from typing import Any

    from .state import RoleStatus

ROLE_FILE = "role"
STATUS_FILE = "status.json"


def write_atomically(path: Path, content: str) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class RoleFiles:
    """Writes a `RoleStatus` into the role directory; skips files whose content is unchanged."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._last_role: str | None = None
        self._last_status: str | None = None

    def write(self, status: RoleStatus) -> None:
        status_text = status.to_json() + "\n"
        role_text = status.role.value + "\n"
        if status_text != self._last_status:
            write_atomically(self.directory / STATUS_FILE, status_text)
            self._last_status = status_text
        if role_text != self._last_role:
            write_atomically(self.directory / ROLE_FILE, role_text)
            self._last_role = role_text


def read_status(directory: Path) -> dict[str, Any] | None:
    """The status document in `directory`, or None if it is missing or unreadable."""
    try:
        document = json.loads((directory / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def read_role(directory: Path) -> str | None:
    try:
        return (directory / ROLE_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
