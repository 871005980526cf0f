"""Which sidecars the soak stopped on purpose, and which exited on their own (a crash).

A fault that stops a sidecar (kill, term, a restart under another clock) says so for as
long as the sidecar is down (`down()`); `check()` restarts any other sidecar found not
running, and counts it: a sidecar may demote under any fault, never die.
Guaranteed: marking and checking may come from any thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator

from ..candidates import SidecarProcess


@dataclasses.dataclass
class Crash:
    identity: str
    at: float
    code: int | None
    log_tail: str


class CrashWatch:
    def __init__(self, sidecars: list[SidecarProcess]) -> None:
        self.sidecars = sidecars
        self.crashes: list[Crash] = []
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def mark_down(self, identity: str) -> None:
        with self._lock:
            self._down.add(identity)

    def mark_up(self, identity: str) -> None:
        with self._lock:
            self._down.discard(identity)

    @contextlib.contextmanager
    def down(self, identity: str) -> Iterator[None]:
        """`identity` is stopped on purpose while the block runs."""
        self.mark_down(identity)
        try:
            yield
        finally:
            self.mark_up(identity)

    def stopped(self) -> set[str]:
        """The sidecars stopped on purpose now."""
        with self._lock:
            return set(self._down)

    def check(self) -> None:
        """Count and restart sidecars that exited although nobody stopped them."""
        for sidecar in self.sidecars:
            if (sidecar.identity in self.stopped() or sidecar.process is None
                    or sidecar.running):
                continue
            code = sidecar.process.returncode
            log = sidecar.log_text()
            self.crashes.append(Crash(sidecar.identity, time.time(), code, log[-2000:]))
            sidecar.start()

    def tracebacks(self) -> dict[str, int]:
        """'Traceback' lines in each sidecar's log (logged, not necessarily fatal)."""
        return {sidecar.identity: sidecar.log_text().count("Traceback (most recent call last)")
                for sidecar in self.sidecars}
