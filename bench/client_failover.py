"""Failover on a real node as a client of the leader Service sees it.

The chart with its defaults (its own three-server ZooKeeper ensemble, NetworkPolicies,
zkAuth, the native sidecar) on the real node of `make cluster-up NODE=real`: kubelet,
containerd, runc, kube-proxy, CoreDNS, images built here. Beside it a client pod
(`sidecar.lab.node.client`) sends `GET /` to the leader Service's ClusterIP every
10 ms, a new connection each time, and the demo application answers with its pod's role,
epoch and lease, read from the role files. Actions, interleaved round by round:

- *graceful*: `kubectl delete pod <leader>`;
- *crash*: SIGKILL of the leader's sidecar container (its pid through the CRI); the
  kubelet restarts it, and leadership moves once ZooKeeper expires the old session;
- *step-down*: `kubectl annotate pod <leader> leader-election/step-down=now`;
- *zk-leader*: `kubectl delete pod` of the ensemble's leader (`srvr` says `Mode: leader`).

Times run from the action as the API server recorded it (the watch event with the
deletionTimestamp or the annotation; for a crash, the signal, which the API server never
sees). Measured for each round: another pod labelled leader, the leader Service's
EndpointSlice holding only that pod (both from a watch, `sidecar/lab/cluster/watch.py`),
and from the client: its first answer from the new leader, the start of the last stretch
in which every answer came from it, the time without an answer from a leader, and the
requests answered as leader (role leader, lease valid) by the old pod once the new one
had answered or been labelled: a client that saw two leaders. For *zk-leader* the
application's leader should not move at all: its figures are the quorum's return and the
client's interruption.

Each round starts with every pod Ready (all its containers running), one pod labelled
leader and the client answered by it for a second. After a crash round the crashed pod,
a follower by then, is deleted: the kubelet's back-off for a container that keeps
failing (10 s, doubling to 5 min, reset after 10 min of running) would otherwise grow
with every crash of the same pod and leave the group with fewer candidates than it has
pods (a step-down with one live candidate hands over to no one).

Run: `python bench/client_failover.py --rounds 20` (`make bench`); needs root and what
the real node needs (`make node-tools`).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, percentile, write_json

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.failover import fail_over, settled, watch_release
from sidecar.lab.cluster.release import ChartRelease, wait
from sidecar.lab.cluster.watch import GroupWatch
from sidecar.lab.node import chartzk
from sidecar.lab.node.client import ClientView, ServiceClient, judge
from sidecar.lab.node.cluster import CHART_VALUES, RealNodeCluster, missing_features

ACTIONS = ("graceful", "crash", "step-down", "zk-leader")
STEADY = 1.0  # seconds of answers from one leader before a round counts as settled
TIMEOUT = 180.0


def stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {"n": len(values), "median_ms": percentile(ordered, 0.5) * 1000,
            "p95_ms": percentile(ordered, 0.95) * 1000, "max_ms": ordered[-1] * 1000,
            "samples_ms": [round(v * 1000, 1) for v in values]}


def settle(release: ChartRelease, watch: GroupWatch, client: ServiceClient) -> None:
    wait(release.all_ready, TIMEOUT, "every pod Ready", interval=0.5)
    client.wait_steady(settled(watch, release.replicas, TIMEOUT), STEADY, TIMEOUT)


def app_round(release: ChartRelease, watch: GroupWatch, client: ServiceClient,
              action: str) -> dict[str, Any]:
    failover = fail_over(release, watch, action, timeout=TIMEOUT)
    client.wait_steady(failover.new, STEADY, TIMEOUT)
    end = time.time()
    if action == "crash":  # no back-off carried into later rounds (see the docstring)
        release.kubectl("delete", "pod", failover.old, "--wait=false")
    start = failover.walls["recorded"]
    view = judge(client.runs_between(start - 1, end), start, end, failover.old,
                 failover.new, failover.walls["labelled"])
    return {"old": failover.old, "new": failover.new, "doubles": len(failover.doubles),
            "labelled": failover.seconds["labelled"], "endpoint": failover.seconds["endpoint"],
            **view_row(view)}


def zk_round(release: ChartRelease, watch: GroupWatch, zk_watch: GroupWatch,
             client: ServiceClient) -> dict[str, Any]:
    app_leader = settled(watch, release.replicas, TIMEOUT)
    server = chartzk.leader(release)
    if server is None:
        raise TimeoutError("no ZooKeeper server says Mode: leader")
    uid = next(p.uid for p in zk_watch.pods.values() if p.name == server and not p.deleting)
    mark, app_mark, commanded = zk_watch.mark(), watch.mark(), time.monotonic()
    release.kubectl("delete", "pod", server, "--wait=false")
    record = zk_watch.wait_for(lambda s: s.uid == uid and s.deleting, mark, TIMEOUT,
                               f"deletion of {server} in the API server")
    wait(lambda: chartzk.modes(release) == chartzk.QUORUM, TIMEOUT,
         "three servers in a quorum again", interval=0.5)
    quorum = time.monotonic() - record.at
    after = settled(watch, release.replicas, TIMEOUT)
    client.wait_steady(after, STEADY, TIMEOUT)
    end = time.time()
    labelled = next((seen.wall for seen in watch.changes[app_mark:]
                     if seen.name == after and seen.role == "leader"), None)
    view = judge(client.runs_between(record.wall - 1, end), record.wall, end, app_leader,
                 after, None if after == app_leader else labelled)
    return {"old": app_leader, "new": after, "server": server, "quorum": quorum,
            "moved": after != app_leader,
            "doubles": len(watch.doubles_since(commanded)), **view_row(view)}


def view_row(view: ClientView) -> dict[str, Any]:
    return {"to_new": view.to_new, "only_new": view.only_new, "outage": view.outage,
            "requests": view.requests, "errors": view.errors, "not_leader": view.not_leader,
            "two_leaders": view.two_leaders, "two_leaders_seconds": view.two_leaders_seconds}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    timed = ("labelled", "endpoint", "to_new", "only_new", "outage", "quorum")
    summary: dict[str, Any] = {"rounds": len(rows)}
    for key in timed:
        values = [row[key] for row in rows if row.get(key) is not None]
        if values:
            summary[key] = stats(values)
    for key in ("doubles", "requests", "errors", "not_leader", "two_leaders"):
        summary[key] = sum(row[key] for row in rows)
    summary["two_leaders_max_ms"] = max((row["two_leaders_seconds"] for row in rows),
                                        default=0.0) * 1000
    summary["moved"] = sum(1 for row in rows if row.get("moved"))
    return summary


def print_round(number: int, action: str, row: dict[str, Any]) -> None:
    cells = [f"{key} {row[key] * 1000:5.0f} ms" for key in
             ("labelled", "endpoint", "quorum", "to_new", "only_new", "outage")
             if row.get(key) is not None]
    print(f"round {number:>3} {action:<9} {row['old']} -> {row['new']}  " + "  ".join(cells)
          + f"  requests {row['requests']} errors {row['errors']} not-leader "
          f"{row['not_leader']} two-leaders {row['two_leaders']} doubles {row['doubles']}",
          flush=True)


def run(cluster: RealNodeCluster, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    release = ChartRelease(cluster, "client-bench", None, base / "release", name="bench",
                           values=CHART_VALUES).install(timeout=600)
    rows: dict[str, list[dict[str, Any]]] = {action: [] for action in args.actions}
    timeouts: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(release.close)
        watch = stack.enter_context(contextlib.closing(watch_release(release)))
        zk_watch = stack.enter_context(contextlib.closing(GroupWatch(
            cluster.kubeconfig, release.namespace, chartzk.selector(release)).start()))
        client = stack.enter_context(contextlib.closing(ServiceClient(release).start()))
        for number in range(1, args.rounds + 1):
            for action in args.actions:
                settle(release, watch, client)
                try:
                    row = (zk_round(release, watch, zk_watch, client) if action == "zk-leader"
                           else app_round(release, watch, client, action))
                except TimeoutError as error:  # said and kept, not fatal
                    print(f"round {number:>3} {action:<9} TIMEOUT: {error}", flush=True)
                    timeouts.append(f"{action} round {number}: {error}")
                    continue
                rows[action].append(row)
                print_round(number, action, row)
                time.sleep(args.settle)
    return {action: {**summarise(found), "timeouts": [t for t in timeouts
                                                      if t.startswith(action + " ")]}
            for action, found in rows.items()}


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['rounds']} rounds per action on the real node; from the action's record;"
          " median (p95)")
    columns = (("labelled", "labelled"), ("endpoint", "slice only new"),
               ("quorum", "ZK quorum"), ("to_new", "client: new"),
               ("only_new", "client: only new"), ("outage", "client: no leader"))
    print(f"{'action':<10}" + "".join(f"{title:>20}" for _, title in columns)
          + f"{'two-leader answers':>20}{'doubles':>9}")
    for action, row in result["actions"].items():
        cells = [f"{row[key]['median_ms']:.0f} ({row[key]['p95_ms']:.0f}) ms"
                 if key in row else "-" for key, _ in columns]
        print(f"{action:<10}" + "".join(f"{cell:>20}" for cell in cells)
              + f"{row['two_leaders']:>20}{row['doubles']:>9}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of each action")
    parser.add_argument("--actions", default=",".join(ACTIONS))
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--json", type=Path, default=RESULTS / "client_failover.json")
    args = parser.parse_args()
    args.actions = args.actions.split(",")
    unknown = set(args.actions) - set(ACTIONS)
    if unknown or args.rounds < 1:
        print(f"client_failover: --actions takes {','.join(ACTIONS)}; --rounds >= 1",
              file=sys.stderr)
        return 2
    missing = missing_features()
    if missing:
        print(f"client_failover: a real node needs {', '.join(missing)}", file=sys.stderr)
        return 2
    # SIGTERM (and SIGINT, which a shell ignores for background jobs) unwinds the stack,
    # so the release and the node are taken down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    base = Path(tempfile.mkdtemp(prefix="bench-client-"))
    cluster = RealNodeCluster("bench-node", binaries.cache_root() / "bench-clusters")
    result: dict[str, Any] = {"rounds": args.rounds, "machine": machine(), "actions": {}}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        cluster.down()  # a run killed before its teardown left one
        stack.callback(cluster.down)
        cluster.up(timeout=300)
        result["actions"] = run(cluster, base, args)
    write_json(args.json, result)
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
