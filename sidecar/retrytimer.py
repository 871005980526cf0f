"""Keyed tries on a thread of their own, each after its own delay: `soon(key, delay)` for
a try at a set time, `later(key)` after the key's next capped, jittered backoff delay.

The reconciler's relabels, its step-down removal and its checks run here, never in a
kopf handler (which must act on a deletion at once) and not as kopf timers (which would
put a finalizer on the pods). A try that raises is logged and the others go on. `close`
is stop-and-join with a bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .k8s import Backoff

log = logging.getLogger(__name__)

BACKOFF = (0.1, 3.0)  # base and cap, in seconds, as the publisher's


class RetryTimer:
    """Pods whose relabel is to be tried again, each after its own backoff delay, on a
    thread of their own (kopf's timers would put a finalizer on the pods)."""

    def __init__(self, attempt: Callable[[str], None], name: str) -> None:
        self._attempt = attempt
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}  # pod -> monotonic time of its next try
        self._backoffs: dict[str, Backoff] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def later(self, pod: str) -> None:
        """Try `pod` again after its next backoff delay."""
        with self._cond:
            if self._closed:
                return
            backoff = self._backoffs.setdefault(pod, Backoff(*BACKOFF))
            self._due[pod] = time.monotonic() + backoff.next_delay()
            self._cond.notify_all()

    def soon(self, pod: str, delay: float = 0.0) -> None:
        """Try `pod` after `delay` (again: the newest call counts), not after a backoff."""
        with self._cond:
            if self._closed:
                return
            self._due[pod] = time.monotonic() + delay
            self._cond.notify_all()

    def forget(self, pod: str) -> None:
        """`pod`'s try succeeded or is moot: a later failure starts its backoff afresh. A
        try scheduled meanwhile (by another thread, while this one was at it) stays: it
        judges afresh, and dropping it could lose a request made during the try."""
        with self._cond:
            self._backoffs.pop(pod, None)

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while (pod := self._next_due()) is not None:
            try:
                self._attempt(pod)
            except Exception:  # a bug: say so, and keep the other pods' tries going
                log.exception("relabel of pod %r on the timer failed", pod)

    def _next_due(self) -> str | None:
        """Wait for the pod whose try is due first; None once closed."""
        with self._cond:
            while not self._closed:
                if not self._due:
                    self._cond.wait()
                    continue
                pod, when = min(self._due.items(), key=lambda item: item[1])
                remaining = when - time.monotonic()
                if remaining <= 0:
                    del self._due[pod]
                    return pod
                self._cond.wait(remaining)
            return None
