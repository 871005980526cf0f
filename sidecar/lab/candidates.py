"""Sidecars as local processes, and the watcher that checks the one-leader invariant.

`SidecarProcess` runs `python -m sidecar run` with a role directory of its own, so tests,
benchmarks and the demo can kill (SIGKILL), stop (SIGTERM), freeze (SIGSTOP) and thaw it.

`LeaseMonitor` reads every candidate's `status.json` in a tight loop and rebuilds each
leadership term from the files' own timestamps: a term starts at `since` of a leader status
and ends at the earliest of the newest `lease_expires` seen in it and the `since` of the
status that followed it. The invariant: no two terms of different candidates overlap.
A term too short to be seen by the poller is missed (the check can only be weaker, never
report a violation that did not happen).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..rolefiles import read_role, read_status
from ..state import parse_isoformat_z
from .clockskew import ClockSkew, clock_map_path, on_real_clock


@dataclasses.dataclass
class SidecarProcess:
    identity: str
    zk_hosts: str
    role_dir: Path
    election: str = "demo"
    session_timeout: float = 2.0
    http_port: int = 0
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None
    kubeconfig: Path | None = None  # with `namespace`: publish to that Kubernetes API
    namespace: str | None = None
    module: str = "sidecar"  # or "sidecar.lab.seams", with a fault at a seam (`seams`)
    clock: ClockSkew | None = None  # run under libfaketime at this rate (`clockskew`)
    wrapper: tuple[str, ...] = ()  # run through this command: `ip netns exec <ns>`

    @property
    def clock_map_path(self) -> Path:
        """Where a skewed process writes its clock against the real one (`ClockMap`)."""
        return clock_map_path(self.role_dir)

    def command(self) -> list[str]:
        if self.kubeconfig is not None and self.namespace is not None:
            kubernetes = ["--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace]
        else:
            kubernetes = ["--no-k8s"]
        return [
            *self.wrapper, sys.executable, "-m", self.module, "run",
            "--zk-hosts", self.zk_hosts, "--election", self.election,
            "--identity", self.identity, "--role-dir", str(self.role_dir),
            "--session-timeout", str(self.session_timeout),
            "--http-port", str(self.http_port), *kubernetes, *self.extra_args,
        ]

    @property
    def log_file(self) -> Path:
        return self.log_path or self.role_dir.with_name(self.role_dir.name + ".log")

    def log_text(self) -> str:
        """Everything the sidecar wrote to stdout and stderr so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> SidecarProcess:
        self.role_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_file
        environment = dict(os.environ if self.env is None else self.env)
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self.clock_map_path.unlink(missing_ok=True)  # a checker reads the clock as true
        if self.clock is not None:
            environment = self.clock.environment(environment, self.clock_map_path)
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=environment,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def role(self) -> str | None:
        return read_role(self.role_dir)

    def status(self) -> dict[str, object] | None:
        return read_status(self.role_dir)

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def terminate(self, timeout: float = 15.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def cleanup(self) -> None:
        if self.running:
            self.thaw()
            assert self.process is not None
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)


def wait_for(predicate: object, timeout: float, interval: float = 0.005) -> bool:
    """Poll `predicate()` until true or the timeout passes."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def leaders(candidates: list[SidecarProcess]) -> list[SidecarProcess]:
    return [c for c in candidates if c.role() == "leader"]


@dataclasses.dataclass
class Term:
    identity: str
    start: dt.datetime
    lease_end: dt.datetime | None = None
    demoted_at: dt.datetime | None = None

    @property
    def end(self) -> dt.datetime:
        ends = [t for t in (self.lease_end, self.demoted_at) if t is not None]
        return min(ends) if ends else self.start

    def overlaps(self, other: Term) -> bool:
        return self.start < other.end and other.start < self.end


def _holds_lease(document: dict[str, object]) -> bool:
    """The file says leader with a lease that has not run out now."""
    text = document.get("lease_expires")
    if document.get("role") != "leader" or not text:
        return False
    lease_end = parse_isoformat_z(str(text))
    return lease_end is not None and lease_end > dt.datetime.now(dt.UTC)


class LeaseMonitor:
    """Polls the role directories of `candidates` until stopped; reports overlapping terms."""

    def __init__(self, role_dirs: dict[str, Path], interval: float = 0.002) -> None:
        self.role_dirs = role_dirs
        self.interval = interval
        self.terms: list[Term] = []
        self.regressions: list[tuple[str, int, int]] = []  # (identity, epoch, newest seen)
        self._newest_epoch = 0  # of any unexpired lease read so far
        self._open: dict[str, Term] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-monitor", daemon=True)
        self.polls = 0
        self.double_instants = 0  # polls in which two files said leader, leases unexpired

    def __enter__(self) -> LeaseMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._poll()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.interval)

    def _poll(self) -> None:
        self.polls += 1
        unexpired = 0
        for identity, role_dir in self.role_dirs.items():
            document = read_status(role_dir)
            if document is not None:
                document = dict(on_real_clock(role_dir, document))
                self.observe(identity, document)
                unexpired += _holds_lease(document)
        if unexpired > 1:
            self.double_instants += 1  # as a sampler sees it: weaker than the terms'

    def observe(self, identity: str, document: dict[str, object]) -> None:
        """One status document of `identity`, in the order it was read."""
        since = parse_isoformat_z(str(document["since"])) if document.get("since") else None
        if since is None:
            return
        term = self._open.get(identity)
        if document.get("role") == "leader":
            lease_text = document.get("lease_expires")
            lease_end = parse_isoformat_z(str(lease_text)) if lease_text else None
            self._check_epoch(identity, document.get("epoch"), lease_end)
            if term is None or term.start != since:
                if term is not None and term.demoted_at is None:
                    term.demoted_at = since
                term = Term(identity, since, lease_end)
                self._open[identity] = term
                self.terms.append(term)
            elif lease_end is not None and (term.lease_end is None or lease_end > term.lease_end):
                term.lease_end = lease_end
        elif term is not None and term.demoted_at is None and since >= term.start:
            term.demoted_at = since

    def _check_epoch(self, identity: str, epoch: object, lease_end: dt.datetime | None) -> None:
        """Epochs of unexpired leases, in the order they are read, never go backwards: an
        application that fences with them would otherwise accept an older leader's
        writes after a newer one's."""
        if not isinstance(epoch, int) or lease_end is None:
            return
        if lease_end <= dt.datetime.now(dt.UTC):
            return  # expired when read: no application acts on it
        if epoch < self._newest_epoch:
            self.regressions.append((identity, epoch, self._newest_epoch))
        self._newest_epoch = max(self._newest_epoch, epoch)

    def violations(self) -> list[tuple[Term, Term]]:
        found = []
        for i, first in enumerate(self.terms):
            for second in self.terms[i + 1 :]:
                if first.identity != second.identity and first.overlaps(second):
                    found.append((first, second))
        return found
