"""The user's failover on the real local control plane, watched as a user's client sees it.

A local control plane of its own (`sidecar.lab.cluster`), a real three-server ZooKeeper
ensemble, and the chart installed by the real `helm` (3 and 5 replicas by default; the
sidecars run by the pod runner as the chart's ServiceAccount). Each round acts on the
pod that carries `role=leader`, the way a user would:

- *graceful*: `kubectl delete pod <leader>` (the runner calls the preStop hook, SIGTERMs
  the sidecar, and holds the pod until it is gone; the StatefulSet recreates it);
- *step-down*: `kubectl annotate pod <leader> leader-election/step-down=now`;
- *crash*: the leader's sidecar process gets SIGKILL (its session must expire).

A watch of the group's pods and of the leader Service's EndpointSlices
(`sidecar.lab.cluster.watch`, `kubectl get -w` without kubectl) records every state the
API server held. From the action as the API server recorded it (the watch event with
the deletionTimestamp or the annotation; for a crash, the signal) it measures: another
pod labelled leader, the `<release>-leader` Service's ready addresses being exactly that
pod's, no other pod labelled leader; and it counts the intervals in which two pods were
labelled leader (the bar for the graceful actions: none). After each round it waits until
every pod is back and labelled.

Run: `python bench/cluster_failover.py --rounds 50` (per action and size; `make bench`).
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

from common import RESULTS, cpu_by_process, cpu_spent, machine, mean_cpu, percentile, write_json

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.lab.cluster.failover import ACTIONS, MEASURES, Failover, fail_over, watch_release
from sidecar.lab.cluster.release import ChartRelease
from sidecar.lab.cluster.timeline import PARTS, parts
from sidecar.lab.ensemble import Ensemble


def stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"n": len(values), "median_ms": percentile(ordered, 0.5) * 1000,
            "p95_ms": percentile(ordered, 0.95) * 1000, "max_ms": ordered[-1] * 1000,
            "samples_ms": [round(v * 1000, 1) for v in values]}


def summarise(rounds: list[Failover], breakdowns: list[dict[str, float]]) -> dict[str, Any]:
    doubles = [d for f in rounds for d in f.doubles]
    row: dict[str, Any] = {key: stats([f.seconds[key] for f in rounds]) for key in MEASURES}
    row.update({
        "rounds": len(rounds),
        "double_label_instants": len(doubles),
        "double_label_ms": [round(d * 1000, 1) for d in doubles],
        "rounds_with_double": sum(1 for f in rounds if f.doubles),
        "cleared_before_labelled": sum(1 for f in rounds if f.cleared_first),
        "unlabelled": stats([f.unlabelled for f in rounds]),
        "recorded_after": stats([f.recorded_after for f in rounds]),
        "parts": {part: stats(values) for part in PARTS
                  if (values := [b[part] for b in breakdowns if part in b])},
    })
    return row


def run_size(cluster: LocalCluster, ensemble: Ensemble, base: Path, replicas: int,
             actions: list[str], rounds: int, args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench-{replicas}-{'-'.join(actions)}"
    release = ChartRelease(cluster, namespace, ensemble.connect_string,
                           base / namespace, name="bench",
                           values={"app": {"replicas": replicas},
                                   "election": {"name": namespace},
                                   "sidecar": {"extraEnv": [{"name": "LOG_LEVEL",
                                                             "value": args.log_level}]}},
                           session_timeout=args.session_timeout).install()
    results: dict[str, list[Failover]] = {action: [] for action in actions}
    breakdowns: dict[str, list[dict[str, float]]] = {action: [] for action in actions}
    cpu: dict[str, list[dict[str, float]]] = {action: [] for action in actions}
    timeouts: list[str] = []
    try:
        with contextlib.closing(watch_release(release)) as watch:
            for number in range(rounds):
                for action in actions:
                    release.wait_settled(60)
                    before = cpu_by_process()
                    try:
                        failover = fail_over(release, watch, action)
                    except TimeoutError as error:  # the lab's hiccup: said, kept, not fatal
                        print(f"{replicas} pods, round {number + 1:>3} {action:<9} "
                              f"TIMEOUT: {error}", flush=True)
                        timeouts.append(f"{action} round {number + 1}: {error}")
                        continue
                    cpu[action].append(cpu_spent(before, cpu_by_process()))
                    results[action].append(failover)
                    release.wait_settled(60)
                    breakdowns[action].append(parts(failover, release.stand_in.workdir))
                    print(f"{replicas} pods, round {number + 1:>3} {action:<9} "
                          f"labelled {failover.seconds['labelled'] * 1000:6.0f} ms  "
                          f"endpoint {failover.seconds['endpoint'] * 1000:6.0f} ms  "
                          f"only {failover.seconds['only'] * 1000:6.0f} ms  "
                          f"doubles {len(failover.doubles)}  parts "
                          + " ".join(f"{part} {seconds * 1000:.0f}"
                                     for part, seconds in breakdowns[action][-1].items()),
                          flush=True)
                    time.sleep(args.settle)
    finally:
        if args.keep_logs is not None:
            shutil.copytree(release.stand_in.workdir, args.keep_logs / namespace,
                            dirs_exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy(cluster.audit_log, args.keep_logs / f"{namespace}-audit.log")
        release.close()
    return {action: {**summarise(rows, breakdowns[action]), "cpu_ms": mean_cpu(cpu[action]),
                     "timeouts": [t for t in timeouts if t.startswith(action)]}
            for action, rows in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="rounds of each action and size")
    parser.add_argument("--replicas", default="3,5", help="comma-separated group sizes")
    parser.add_argument("--actions", default=",".join(ACTIONS))
    parser.add_argument("--crash-rounds", type=int, default=10,
                        help="rounds of crash (each waits a session timeout)")
    parser.add_argument("--session-timeout", type=int, default=2)
    parser.add_argument("--settle", type=float, default=0.5, help="seconds between rounds")
    parser.add_argument("--json", type=Path, default=RESULTS / "cluster_failover.json")
    parser.add_argument("--log-level", default="INFO", help="the sidecars' LOG_LEVEL")
    parser.add_argument("--keep-logs", type=Path, help="copy the sidecars' logs here")
    args = parser.parse_args()
    sizes = [int(size) for size in args.replicas.split(",")]
    actions = args.actions.split(",")
    base = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    cluster = LocalCluster(f"bench-{base.name[-8:].lower()}",
                           binaries.cache_root() / "bench-clusters",
                           bin_dir=binaries.ensure_built())
    ensemble = Ensemble(size=3, tick_time_ms=200)
    result: dict[str, Any] = {"rounds": args.rounds, "crash_rounds": args.crash_rounds,
                              "session_timeout_s": args.session_timeout, "sizes": {}}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        cluster.up()
        stack.callback(cluster.down)
        ensemble.start()
        stack.callback(ensemble.stop)
        result["machine"] = machine(ensemble)
        for replicas in sizes:
            graceful = [a for a in actions if a != "crash"]
            row = run_size(cluster, ensemble, base, replicas, graceful, args.rounds, args)
            if "crash" in actions and args.crash_rounds:
                row.update(run_size(cluster, ensemble, base, replicas, ["crash"],
                                    args.crash_rounds, args))
            result["sizes"][str(replicas)] = row
            write_json(args.json, result)  # each size as it is done
    print(f"\n{args.rounds} rounds per graceful action ({args.crash_rounds} crashes) and "
          f"size, session timeout {args.session_timeout} s; from the action's record")
    print(f"{'pods':<5}{'action':<10}{'measure':<38}{'median':>9}{'p95':>9}{'max':>9}"
          f"{'doubles':>9}")
    for size, row in result["sizes"].items():
        for action, measures in row.items():
            for key, label in MEASURES.items():
                print(f"{size:<5}{action:<10}{label:<38}{measures[key]['median_ms']:>7.0f}ms"
                      f"{measures[key]['p95_ms']:>7.0f}ms{measures[key]['max_ms']:>7.0f}ms"
                      f"{measures['double_label_instants'] if key == 'labelled' else '':>9}")
    print(f"\n{'pods':<5}{'action':<10}{'part':<48}{'median':>9}{'p95':>9}")
    for size, row in result["sizes"].items():
        for action, measures in row.items():
            for part, values in measures["parts"].items():
                print(f"{size:<5}{action:<10}{PARTS[part]:<48}{values['median_ms']:>7.0f}ms"
                      f"{values['p95_ms']:>7.0f}ms")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
