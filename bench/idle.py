"""Cost of one idle sidecar: resident memory and CPU over a minute.

Two elections of two `python -m sidecar run` processes each (a leader renewing its lease,
and its heir keeping its anchor) on one real three-server ensemble, measured at the same
time: one election with `--no-k8s`, one publishing to a real kube-apiserver (a local
control plane of its own, `sidecar.lab.cluster`, as the chart's ServiceAccount) with the
kopf operator watching the group's pods. After a warm-up, CPU is the process's
utime+stime over the window; memory is VmRSS, sampled every second.

Run: `python bench/idle.py` (`--seconds 10` for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, process_cpu_seconds, process_rss_mb, write_json

from sidecar.k8s import GROUP_LABEL
from sidecar.lab.candidates import SidecarProcess, wait_for
from sidecar.lab.cluster.namespace import cluster_namespace
from sidecar.lab.ensemble import Ensemble


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--session-timeout", type=float, default=6.0,
                        help="the sidecar's default (6 s): renewals every 1.5 s")
    parser.add_argument("--json", type=Path, default=RESULTS / "idle.json")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    # tickTime 300 ms allows sessions up to 6 s (20 ticks).
    ensemble = Ensemble(size=3, tick_time_ms=300).start()
    stack = contextlib.ExitStack()
    api = stack.enter_context(cluster_namespace(base, "bench-idle"))
    # app-0: the chart's Role lets its ServiceAccount patch only the release's pod names.
    sidecars: dict[str, SidecarProcess] = {}
    for index, role in enumerate(("leader", "follower")):
        api.add_pod(f"app-{index}", {GROUP_LABEL: "idle-k8s", "app": "demo"})
        sidecars[f"without Kubernetes, {role}"] = SidecarProcess(
            f"idle-plain-{index}", ensemble.connect_string, base / f"plain-{index}",
            election="idle-plain", session_timeout=args.session_timeout,
        )
        sidecars[f"with Kubernetes publisher + operator, {role}"] = SidecarProcess(
            f"app-{index}", ensemble.connect_string, base / f"k8s-{index}", election="idle-k8s",
            session_timeout=args.session_timeout,
            kubeconfig=Path(api.kubeconfig_path), namespace=api.namespace,
        )
    results: dict[str, Any] = {}
    try:
        info = machine(ensemble)
        for key, sidecar in sidecars.items():  # leaders first: they start before followers
            sidecar.start()
            role = key.rsplit(", ", 1)[1]
            if not wait_for(lambda s=sidecar, r=role: s.role() == r, 30):
                raise SystemExit(f"{sidecar.identity} is not {role}: {sidecar.role()}")
        if not wait_for(lambda: api.labels("app-0").get("role") == "leader", 30):
            raise SystemExit("the Kubernetes publisher did not label the pod")
        time.sleep(args.warmup)
        cpu0 = {k: process_cpu_seconds(s.pid) for k, s in sidecars.items()}
        rss: dict[str, list[float]] = {k: [] for k in sidecars}
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            for key, sidecar in sidecars.items():
                rss[key].append(process_rss_mb(sidecar.pid))
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        for key, sidecar in sidecars.items():
            cpu = process_cpu_seconds(sidecar.pid) - cpu0[key]
            results[key] = {
                "cpu_percent_of_a_core": cpu / elapsed * 100,
                "rss_mb_median": statistics.median(rss[key]),
                "rss_mb_max": max(rss[key]),
                "role_at_end": sidecar.role(),
            }
    finally:
        for sidecar in sidecars.values():
            sidecar.cleanup()
        stack.close()
        ensemble.stop()
        shutil.rmtree(base, ignore_errors=True)
    result = {"machine": info, "seconds": args.seconds,
              "session_timeout_s": args.session_timeout, "sidecars": results}
    print(f"\nidle sidecars, {args.seconds:g} s window")
    print(f"{'sidecar':<50}{'RSS MB':>8}{'max':>7}{'CPU % core':>12}")
    for key, row in results.items():
        print(f"{key:<50}{row['rss_mb_median']:>8.1f}{row['rss_mb_max']:>7.1f}"
              f"{row['cpu_percent_of_a_core']:>12.2f}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
