"""The soak's independent checker: a process of its own that only reads what users read.

It shares nothing with the sidecars or with the process that injects faults: it reads
every candidate's `role` and `status.json` in a loop (at least 500 times a second: it
asks for a higher scheduling priority when it may) and, with Kubernetes, watches the
group's pods as `kubectl get pods -w` would, as the cluster admin. It records:

- instants at which two candidates' files say leader with a lease that has not expired
  by the checker's clock (`lease_expires` is wall-clock time, as applications read it);
- leadership terms, rebuilt from the files' own timestamps (`LeaseMonitor`), to find
  overlapping terms the sampling could miss, and each term's epoch;
- torn reads (a `status.json` that does not parse, a `role` that is not a role) and lost
  files (a file that existed and is gone);
- when "some candidate holds an unexpired lease" and "exactly one pod is labelled leader
  and its sidecar says leader" change, for the recovery times after each fault.

On SIGTERM it writes everything as JSON to the path it was given and exits 0.
Not guaranteed: an overlap shorter than a sampling interval is seen as an instant (the
terms still see it if both files show it); label times are when the watch delivered them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ...rolefiles import ROLE_FILE, STATUS_FILE
from ...state import Role, parse_isoformat_z
from ..candidates import LeaseMonitor
from ..clockskew import on_real_clock

TARGET_INTERVAL = 0.00125  # seconds between samples: 800 Hz, above the 500 Hz required
ROLES = {role.value for role in Role}
EXAMPLES = 20  # violations kept with their details
WATCH_RETRY = 0.2


class Timeline:
    """A boolean over time, stored as its changes."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, bool]] = []

    def set(self, instant: float, value: bool) -> None:
        if not self.changes or self.changes[-1][1] != value:
            self.changes.append((instant, value))


class LabelWatch:
    """The group's pods' `role` labels, kept current by a watch that reconnects."""

    def __init__(self, kubeconfig: str, namespace: str, selector: str) -> None:
        self.kubeconfig, self.namespace, self.selector = kubeconfig, namespace, selector
        self.labels: dict[str, str | None] = {}
        self.connected = False
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="label-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import kubernetes  # only the checker's Kubernetes half needs it

        config: Any = kubernetes.config
        client: Any = config.new_client_from_config(self.kubeconfig)
        core: Any = kubernetes.client.CoreV1Api(client)
        watch_module: Any = kubernetes.watch
        while not self._stop.is_set():
            # The apiserver stopped, the watch expired, the list failed: list again.
            with contextlib.suppress(Exception):
                self._follow(watch_module.Watch(), core)
            self.connected = False
            self.reconnects += 1
            self._stop.wait(WATCH_RETRY)

    def _follow(self, watch: Any, core: Any) -> None:
        listing = core.list_namespaced_pod(self.namespace, label_selector=self.selector,
                                           _request_timeout=5)
        self.labels = {pod.metadata.name: (pod.metadata.labels or {}).get("role")
                       for pod in listing.items}
        self.connected = True
        for event in watch.stream(core.list_namespaced_pod, self.namespace,
                                  label_selector=self.selector,
                                  resource_version=listing.metadata.resource_version,
                                  timeout_seconds=300, _request_timeout=330):
            pod = event["object"]
            name = pod.metadata.name
            if event["type"] == "DELETED":
                self.labels.pop(name, None)
            else:
                self.labels[name] = (pod.metadata.labels or {}).get("role")
            if self._stop.is_set():
                return


class Checker:
    def __init__(self, role_dirs: dict[str, Path], labels: LabelWatch | None) -> None:
        self.role_dirs = role_dirs
        self.label_watch = labels
        self.terms = LeaseMonitor(role_dirs)
        self.samples = 0
        self.started = time.time()
        self.max_gap = 0.0
        self.two_leases: list[dict[str, Any]] = []
        self.two_lease_samples = 0
        self.torn: list[dict[str, Any]] = []
        self.lost: list[dict[str, Any]] = []
        self.counts = {"torn": 0, "lost": 0}
        self.leader_present = Timeline()
        self.one_label = Timeline()
        self._raw: dict[str, str] = {}
        self._documents: dict[str, dict[str, Any]] = {}
        self._leases: dict[str, dt.datetime | None] = {}
        self._seen: set[tuple[str, str]] = set()
        self.epochs: dict[tuple[str, float], int | None] = {}  # (identity, term start)

    def _read(self, identity: str, name: str, now: float) -> str | None:
        try:
            text = (self.role_dirs[identity] / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            if (identity, name) in self._seen:
                self._violation("lost", {"t": now, "identity": identity, "file": name})
            return None
        except (OSError, UnicodeDecodeError) as error:
            self._violation("torn", {"t": now, "identity": identity, "file": name,
                                     "error": str(error)})
            return None
        self._seen.add((identity, name))
        return text

    def _violation(self, kind: str, detail: dict[str, Any]) -> None:
        self.counts[kind] += 1
        kept = self.torn if kind == "torn" else self.lost
        if len(kept) < EXAMPLES:
            kept.append(detail)

    def _status(self, identity: str, now: float) -> None:
        text = self._read(identity, STATUS_FILE, now)
        if text is None or text == self._raw.get(identity):
            return
        try:
            document = dict(on_real_clock(self.role_dirs[identity], json.loads(text)))
            lease = parse_isoformat_z(document.get("lease_expires"))
            since = parse_isoformat_z(document.get("since"))
        except (ValueError, TypeError, AttributeError) as error:
            self._violation("torn", {"t": now, "identity": identity, "file": STATUS_FILE,
                                     "error": str(error), "text": text[:200]})
            return
        self._raw[identity] = text
        self._documents[identity] = document
        self._leases[identity] = lease if document.get("role") == "leader" else None
        if document.get("role") == "leader" and since is not None:
            self.epochs.setdefault((identity, since.timestamp()), document.get("epoch"))
        self.terms.observe(identity, document)

    def _role(self, identity: str, now: float) -> None:
        text = self._read(identity, ROLE_FILE, now)
        if text is not None and text.strip() not in ROLES:
            self._violation("torn", {"t": now, "identity": identity, "file": ROLE_FILE,
                                     "text": text[:200]})

    def sample(self) -> None:
        now = time.time()
        for identity in self.role_dirs:
            self._status(identity, now)
            self._role(identity, now)
        instant = dt.datetime.fromtimestamp(now, dt.UTC)
        holders = [identity for identity, lease in self._leases.items()
                   if lease is not None and instant < lease]
        if len(holders) > 1:
            self.two_lease_samples += 1
            if len(self.two_leases) < EXAMPLES:
                self.two_leases.append({"t": now, "holders": holders,
                                        "documents": [self._documents[h] for h in holders]})
        self.leader_present.set(now, bool(holders))
        if self.label_watch is not None:
            self.one_label.set(now, self._one_label_leader())
        self.samples += 1

    def _one_label_leader(self) -> bool:
        watch = self.label_watch
        if watch is None or not watch.connected:
            return False
        labelled = [pod for pod, role in list(watch.labels.items()) if role == "leader"]
        return (len(labelled) == 1
                and (self._documents.get(labelled[0]) or {}).get("role") == "leader")

    def run(self, stop: threading.Event) -> None:
        last = due = time.monotonic()
        while not stop.is_set():
            self.sample()
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now
            # Samples are due on a fixed clock; after a stall the clock restarts rather
            # than sampling in a burst to catch up.
            due = max(due + TARGET_INTERVAL, now)
            time.sleep(max(0.0, due - time.monotonic()))

    def report(self) -> dict[str, Any]:
        elapsed = max(time.time() - self.started, 1e-9)
        terms = sorted(self.terms.terms, key=lambda term: term.start)
        return {
            "samples": self.samples,
            "seconds": round(elapsed, 3),
            "rate_hz": round(self.samples / elapsed, 1),
            "max_gap_ms": round(self.max_gap * 1000, 2),
            "two_lease_samples": self.two_lease_samples,
            "two_lease_examples": self.two_leases,
            "overlapping_terms": [[a.identity, str(a.start), b.identity, str(b.start)]
                                  for a, b in self.terms.violations()],
            "terms": [{"identity": term.identity, "start": term.start.timestamp(),
                       "end": term.end.timestamp(),
                       "epoch": self.epochs.get((term.identity, term.start.timestamp()))}
                      for term in terms],
            "torn": self.counts["torn"], "torn_examples": self.torn,
            "lost": self.counts["lost"], "lost_examples": self.lost,
            "leader_present": self.leader_present.changes,
            "one_label_leader": self.one_label.changes if self.label_watch else None,
            "label_watch_reconnects": self.label_watch.reconnects if self.label_watch else None,
        }


def _raise_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(-10)  # root only; elsewhere the checker runs at the default priority


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the soak's independent checker")
    parser.add_argument("--config", type=Path, required=True,
                        help="JSON: role_dirs, out, and optionally kubeconfig, namespace, "
                             "selector")
    options = parser.parse_args(argv)
    config = json.loads(options.config.read_text())
    role_dirs = {identity: Path(path) for identity, path in config["role_dirs"].items()}
    labels = None
    if config.get("kubeconfig"):
        labels = LabelWatch(config["kubeconfig"], config["namespace"], config["selector"])
        labels.start()
    _raise_priority()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    checker = Checker(role_dirs, labels)
    Path(config["ready"]).write_text("ready\n")
    checker.run(stop)
    if labels is not None:
        labels.stop()
    Path(config["out"]).write_text(json.dumps(checker.report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
