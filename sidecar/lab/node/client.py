"""A client pod that calls the leader Service every 10 ms, as an application's client would.

`ServiceClient` runs one pod (the project image, Pod Security `restricted`) that sends
`GET /` to the `<release>-leader` Service's ClusterIP in a loop, a new connection per
request, so that kube-proxy picks the endpoint anew each time. The demo application
answers with its pod's role, identity, epoch and whether its lease is valid, read from
the role files its sidecar writes. The pod reports *runs*: a line when the answer changes
(a run of equal answers ends), and a heartbeat twice a second with the current run, on
its log; the host follows the log. Runs keep the log small (a few bytes a second) while
every request is still counted.

Guaranteed: every request the pod made is in exactly one run, with the wall-clock time of
the first and the last request of the run (the pod and the host share one clock: it is
the same kernel). Not guaranteed: sub-period timing (a request is dated when it was sent,
and the period stretches while a request waits for its 0.5 s timeout).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from sidecar.lab.cluster.release import ChartRelease, wait

IMAGE = "localhost/leader-sidecar:dev"
PERIOD = 0.010
# Runs in the pod; standard library only. An answer is (identity, role, epoch, lease
# valid); a failed request is (None, "error:<kind>", None, False).
PROGRAM = r"""
import http.client, json, sys, time
host, port, period = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

def ask():
    conn = http.client.HTTPConnection(host, port, timeout=0.5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = json.loads(response.read())
        role = body.get("role") if response.status == 200 else "status:%d" % response.status
        return [body.get("identity"), role, body.get("epoch"), bool(body.get("lease_valid"))]
    except Exception as error:
        return [None, "error:" + type(error).__name__, None, False]
    finally:
        conn.close()

def emit(kind, run, first, last, count):
    print(json.dumps({"k": kind, "a": run, "f": first, "l": last, "n": count}), flush=True)

run, first, last, count, beat = None, 0.0, 0.0, 0, 0.0
due = time.monotonic()
while True:
    sent = time.time()
    answer = ask()
    if answer != run:
        if run is not None:
            emit("run", run, first, last, count)
        run, first, count = answer, sent, 0
    last, count = sent, count + 1
    if sent - beat >= 0.5:
        emit("beat", run, first, last, count)
        beat = sent
    due += period
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    else:
        due = time.monotonic()
"""


def python_pod(name: str, argv: list[str], labels: dict[str, str] | None = None,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod that runs `python <argv>` once in the project image and passes Pod Security
    `restricted` (non-root, RuntimeDefault seccomp, no capabilities, read-only root)."""
    container: dict[str, Any] = {
        "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
        "command": ["python", *argv],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
        },
    }


@dataclasses.dataclass(frozen=True)
class Run:
    """Consecutive requests that got the same answer."""

    who: str | None  # the answering pod (its identity), None for a failed request
    role: str  # "leader", "follower", "unknown", "status:503", "error:<kind>"
    epoch: int | None
    lease_valid: bool
    first: float  # wall-clock time the first request of the run was sent
    last: float  # ... and the last
    count: int
    done: bool = True  # False for the current run (from a heartbeat)

    @property
    def as_leader(self) -> bool:
        """Answered as the leader: the check an application makes before acting."""
        return self.role == "leader" and self.lease_valid


class ServiceClient:
    """The client pod of one release's leader Service; `start()`, then `close()`."""

    def __init__(self, release: ChartRelease, name: str = "leader-client",
                 period: float = PERIOD) -> None:
        self.release = release
        self.name = name
        self.period = period
        self.runs: list[Run] = []
        self.current: Run | None = None
        self._cond = threading.Condition()
        self._follower: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> ServiceClient:
        service = self.release.get_json("service", f"{self.release.name}-leader")
        address, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
        self.release.cluster.kubectl("-n", self.release.namespace, "apply", "-f", "-",
                                     input=json.dumps(self._manifest(address, int(port))))
        wait(lambda: self.release.get_json("pod", self.name)["status"].get("phase")
             == "Running", timeout, f"client pod {self.name} running")
        cluster = self.release.cluster
        self._follower = subprocess.Popen(
            [cluster.tool("kubectl"), "--kubeconfig", str(cluster.kubeconfig),
             "-n", self.release.namespace, "logs", "-f", self.name],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, name="service-client",
                                        daemon=True)
        self._thread.start()
        self.wait_for(lambda run: True, timeout, "the client's first answer")
        return self

    def close(self) -> None:
        if self._follower is not None:
            self._follower.terminate()
            self._follower.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.release.kubectl("delete", "pod", self.name, "--wait=false",
                             "--ignore-not-found", check=False)

    def _manifest(self, address: str, port: int) -> dict[str, Any]:
        return python_pod(self.name, ["-u", "-c", PROGRAM, address, str(port),
                                      str(self.period)],
                          labels={"app.kubernetes.io/name": self.name})

    # --- reading ------------------------------------------------------------------------

    def _read(self) -> None:
        assert self._follower is not None and self._follower.stdout is not None
        for line in self._follower.stdout:
            try:
                record = json.loads(line)
                who, role, epoch, lease_valid = record["a"]
                run = Run(who, role, epoch, lease_valid, record["f"], record["l"],
                          record["n"], done=record["k"] == "run")
            except (ValueError, KeyError, TypeError):
                continue  # not one of ours (a runtime's line)
            with self._cond:
                if run.done:
                    self.runs.append(run)
                    self.current = None
                else:
                    self.current = run
                self._cond.notify_all()

    def runs_between(self, start: float, end: float) -> list[Run]:
        """Runs with a request in [start, end] (wall clock), the current one included."""
        with self._cond:
            runs = self.runs + ([self.current] if self.current else [])
        return [r for r in runs if r.last >= start and r.first <= end]

    def wait_for(self, predicate: Callable[[Run], bool], timeout: float, what: str,
                 since: float = 0.0) -> Run:
        """The first run (done or current) that started at or after `since` and
        satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                runs = self.runs + ([self.current] if self.current else [])
                for run in runs:
                    if run.first >= since and predicate(run):
                        return run
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what}: not within {timeout:.0f} s")
                self._cond.wait(remaining)

    def wait_steady(self, who: str, seconds: float, timeout: float) -> Run:
        """Wait until the current run has answered as leader from `who` for `seconds`."""
        return self.wait_for(lambda run: run.who == who and run.as_leader and (
            not run.done and run.last - run.first >= seconds), timeout,
            f"{seconds:.0f} s of answers from {who} as leader")


@dataclasses.dataclass(frozen=True)
class ClientView:
    """One failover as the client saw it, from the action's record to the window's end."""

    requests: int
    to_new: float | None  # seconds to the first answer from the new leader as leader
    only_new: float | None  # seconds to the start of the last stretch of such answers
    outage: float  # seconds without an answer as leader (errors, 503, a follower's)
    errors: int  # failed requests (refused, timed out)
    not_leader: int  # answered, honestly, by a pod that was not the leader (follower,
    #                  unknown, an expired lease)
    two_leaders: int  # answered as leader by the old pod after the new one had answered
    #                   as leader or had been labelled: a client saw two leaders
    two_leaders_seconds: float  # how long that lasted


def judge(runs: list[Run], start: float, end: float, old: str, new: str,
          new_labelled: float | None) -> ClientView:
    """The client's view of the failover from `old` to `new` (the same pod for an action
    that should not move leadership), from wall-clock `start` (the action's record) to
    `end`. `new_labelled` is the wall-clock instant the watch saw the new label. A run
    that straddles `start` or `end` counts the share of its requests inside."""
    runs = [r for r in sorted(runs, key=lambda r: r.first) if r.last >= start and r.first <= end]

    def inside(run: Run, after: float = start) -> int:
        if run.last <= run.first:
            return run.count
        share = (min(run.last, end) - max(run.first, after)) / (run.last - run.first)
        return max(1, round(run.count * min(1.0, share)))

    new_runs = [r for r in runs if r.who == new and r.as_leader]
    first_new = max(new_runs[0].first, start) if new_runs else None
    stretch = None
    for run in reversed(runs):  # the last stretch of answers from the new leader
        if not (run.who == new and run.as_leader):
            break
        stretch = max(run.first, start)
    outage = sum(max(0.0, min(r.last, end) - max(r.first, start)) + PERIOD
                 for r in runs if not r.as_leader)
    marks = [t for t in (first_new, new_labelled) if t is not None]
    horizon = min(marks) if marks else end
    stale = [r for r in runs if old != new and r.who == old and r.as_leader
             and r.last > horizon]
    return ClientView(
        requests=sum(inside(r) for r in runs),
        to_new=None if first_new is None else first_new - start,
        only_new=None if stretch is None else stretch - start,
        outage=outage,
        errors=sum(inside(r) for r in runs if r.who is None),
        not_leader=sum(inside(r) for r in runs if r.who is not None and not r.as_leader),
        two_leaders=sum(inside(r, horizon) for r in stale),
        two_leaders_seconds=max((r.last - horizon for r in stale), default=0.0),
    )
