"""Label update latency after a graceful failover, on the real local control plane.

Three sidecar processes on a real 3-server ZooKeeper ensemble publish to a real
kube-apiserver (a cluster of its own, `sidecar.lab.cluster`, the sidecars authenticated as
the chart's ServiceAccount, see `tests/kube/cluster_support.py`). Each round stops the
leader with SIGTERM and measures, from the signal, (a) the successor's role file saying
`leader` and (b) the successor's pod carrying `role=leader` in the API. Prints medians.

Run: `python bench/label_latency.py --rounds 20`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "kube"))

from cluster_support import cluster_namespace  # noqa: E402

from sidecar.k8s import GROUP_LABEL  # noqa: E402
from sidecar.lab.candidates import SidecarProcess, leaders, wait_for  # noqa: E402
from sidecar.lab.ensemble import Ensemble  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between rounds")
    parser.add_argument("--json", type=Path, default=Path("bench/results/label_latency.json"))
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-label-"))
    ensemble = Ensemble()
    members: list[SidecarProcess] = []
    files: list[float] = []
    labels: list[float] = []
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(cluster_namespace(base, "bench-label"))
        ensemble.start()
        stack.callback(ensemble.stop)
        stack.callback(lambda: [member.cleanup() for member in members])
        for i in range(3):
            api.add_pod(f"app-{i}", {GROUP_LABEL: "bench", "app": "demo"})
            members.append(SidecarProcess(
                identity=f"app-{i}", zk_hosts=ensemble.connect_string,
                role_dir=base / f"app-{i}", election="bench",
                kubeconfig=Path(api.kubeconfig_path), namespace=api.namespace,
            ).start())
        for _ in range(args.rounds):
            assert wait_for(lambda: len(leaders(members)) == 1 and all(
                api.labels(m.identity).get("role") == m.role() for m in members), 30)
            time.sleep(args.settle)  # a restarted sidecar's start-up (imports, kopf) costs CPU
            old = leaders(members)[0]
            others = [m for m in members if m is not old]
            started = time.monotonic()
            old.signal(15)
            new = None
            while new is None:
                new = next((m for m in others if m.role() == "leader"), None)
            files.append(time.monotonic() - started)
            while api.labels(new.identity).get("role") != "leader":
                time.sleep(0.0005)
            labels.append(time.monotonic() - started)
            old.wait(30)
            old.start()
    result = {
        "rounds": args.rounds,
        "role_file_median_ms": statistics.median(files) * 1000,
        "label_median_ms": statistics.median(labels) * 1000,
        "label_max_ms": max(labels) * 1000,
    }
    print(f"graceful failover, 3 sidecars, real kube-apiserver, {args.rounds} rounds")
    print(f"  successor's role file says leader: median {result['role_file_median_ms']:.1f} ms")
    print(f"  successor's pod label says leader: median {result['label_median_ms']:.1f} ms "
          f"(max {result['label_max_ms']:.1f} ms)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
