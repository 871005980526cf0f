"""Events as client-go's recorder posts them: the pending Event, the correlation that
counts a repeat on the Event it repeats, the per-pod token bucket, and the Event object.

The Kubernetes publisher (sidecar/k8s.py) queues and posts them on its worker thread;
nothing here makes a request. Not guaranteed: anything across restarts (the limiter's
memory is the process's).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import time
from typing import Any

COMPONENT = "leader-sidecar"
# client-go's EventCorrelator: repeats within 10 minutes are counted on one Event; a
# token bucket per involved object of 25, refilled one per 5 minutes.
AGGREGATE_WINDOW = 600.0
SPAM_BURST = 25
SPAM_REFILL = 300.0


@dataclasses.dataclass
class _Posted:
    """An Event this publisher posted, for counting its repeats."""

    name: str
    count: int
    at: float  # monotonic time of the last post or repeat


class EventLimiter:
    """client-go's event correlation, the parts a sidecar needs: `repeat_of` finds the Event
    a new one repeats within `AGGREGATE_WINDOW`; `allow` is the per-pod token bucket.
    Worker thread only."""

    def __init__(self, window: float = AGGREGATE_WINDOW, burst: int = SPAM_BURST,
                 refill: float = SPAM_REFILL) -> None:
        self.window, self.burst, self.refill = window, burst, refill
        self._posted: dict[tuple[str, str, str, str], _Posted] = {}
        # (pod, reason) -> (tokens, as of): client-go's spam key is the source, the
        # involved object, the type and the reason.
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    @staticmethod
    def key(event: PendingEvent) -> tuple[str, str, str, str]:
        return (event.pod, event.reason, event.message, event.type)

    def repeat_of(self, event: PendingEvent, now: float) -> _Posted | None:
        posted = self._posted.get(self.key(event))
        return posted if posted is not None and now - posted.at < self.window else None

    def allow(self, event: PendingEvent, now: float) -> bool:
        """A post (or a counted repeat) of `event` now, within the token bucket."""
        key = (event.pod, event.reason)
        tokens, since = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - since) / self.refill)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def posted(self, event: PendingEvent, name: str, count: int, now: float) -> None:
        self._posted = {k: v for k, v in self._posted.items() if now - v.at < self.window}
        self._posted[self.key(event)] = _Posted(name, count, now)


@dataclasses.dataclass(frozen=True)
class PendingEvent:
    reason: str
    message: str
    type: str
    when: dt.datetime
    pod: str  # the involved pod (the own pod unless the operator names another)
    uid: str | None = None
    queued: float = dataclasses.field(default_factory=time.monotonic, compare=False)


def event_body(event: PendingEvent, namespace: str, own_pod: str,
               own_uid: str | None) -> dict[str, Any]:
    """The Event object as client-go's recorder makes it (core/v1, so that `kubectl
    describe pod` shows it), posted by `own_pod` about `event.pod`."""
    stamp = event.when.strftime("%Y-%m-%dT%H:%M:%SZ")
    involved: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": event.pod,
        "namespace": namespace,
    }
    uid = event.uid if event.pod != own_pod else (event.uid or own_uid)
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # client-go's naming: unique without generateName, sortable by time.
        "metadata": {
            "name": f"{event.pod}.{time.time_ns():x}{secrets.token_hex(2)}",
            "namespace": namespace,
        },
        "involvedObject": involved,
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT, "host": own_pod},
        "reportingComponent": COMPONENT,
        "reportingInstance": own_pod,
    }
