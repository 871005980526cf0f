"""The user's failover on the real local control plane, measured as a user sees it.

A local control plane of its own (`sidecar.lab.cluster`), a real three-server ZooKeeper
ensemble, and the chart installed by the real `helm` (3 replicas; the sidecars run by the
pod runner as the chart's ServiceAccount). Each round acts on the pod that carries
`role=leader`, the way a user would:

- *graceful*: `kubectl delete pod <leader>` (the runner calls the preStop hook, SIGTERMs
  the sidecar, and holds the pod until it is gone; the StatefulSet recreates it);
- *crash*: the leader's sidecar process gets SIGKILL (its session must expire);
- *step-down*: `kubectl annotate pod <leader> leader-election/step-down=now`.

From the command, it measures (a) another pod labelled `role=leader`, (b) the
`<release>-leader` Service's EndpointSlice (made by the real EndpointSlice controller)
holding exactly that pod's address, ready, and (c) no pod but the new leader labelled
leader. The clock polls the apiserver as admin about every 5 ms (so each figure is
late by up to one poll). After each round it waits until every pod is back and labelled.

Run: `python bench/cluster_failover.py --rounds 20` (per kind; `make bench` does).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, percentile, write_json

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.lab.cluster.failover import ACTIONS, MEASURES, Observer, fail_over
from sidecar.lab.cluster.release import ChartRelease
from sidecar.lab.ensemble import Ensemble


def stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"n": len(values), "median_ms": percentile(ordered, 0.5) * 1000,
            "p95_ms": percentile(ordered, 0.95) * 1000, "max_ms": ordered[-1] * 1000,
            "samples_ms": [round(v * 1000, 1) for v in values]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of each kind")
    parser.add_argument("--session-timeout", type=int, default=2)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--json", type=Path, default=RESULTS / "cluster_failover.json")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    cluster = LocalCluster(f"bench-{base.name[-8:].lower()}",
                           binaries.cache_root() / "bench-clusters",
                           bin_dir=binaries.ensure_built())
    ensemble = Ensemble(size=3, tick_time_ms=200)
    results: dict[str, dict[str, list[float]]] = {
        kind: {key: [] for key in MEASURES} for kind in ACTIONS}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        cluster.up()
        stack.callback(cluster.down)
        ensemble.start()
        stack.callback(ensemble.stop)
        info = machine(ensemble)
        release = ChartRelease(cluster, "bench", ensemble.connect_string, base,
                               session_timeout=args.session_timeout).install()
        stack.callback(release.close)
        observer = Observer(release)
        stack.callback(observer.close)
        for round_ in range(args.rounds):
            for kind in ACTIONS:
                seen = fail_over(release, observer, kind).seconds
                for key, value in seen.items():
                    results[kind][key].append(value)
                print(f"round {round_ + 1:>3} {kind:<9} labelled {seen['labelled']*1000:7.0f} ms"
                      f"  endpoint {seen['endpoint']*1000:7.0f} ms"
                      f"  only leader {seen['only']*1000:7.0f} ms", flush=True)
                release.wait_settled(60)
                time.sleep(args.settle)
    result = {
        "machine": info, "rounds": args.rounds, "replicas": 3,
        "session_timeout_s": args.session_timeout,
        "kinds": {kind: {key: stats(values) for key, values in measures.items()}
                  for kind, measures in results.items()},
    }
    print(f"\n{args.rounds} rounds each, 3 pods, session timeout {args.session_timeout} s")
    print(f"{'failover':<10}{'measure':<38}{'median':>9}{'p95':>9}{'max':>9}")
    for kind, measures in result["kinds"].items():
        for key, row in measures.items():
            print(f"{kind:<10}{MEASURES[key]:<38}{row['median_ms']:>7.0f}ms"
                  f"{row['p95_ms']:>7.0f}ms{row['max_ms']:>7.0f}ms")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
