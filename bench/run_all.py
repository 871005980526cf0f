"""`make bench`: every benchmark in turn, then `docs/benchmarks.md` and the plot.

Each benchmark also runs alone (`python bench/<name>.py --help`); this runs them with
their defaults, one after the other (they would disturb each other's timings on a small
machine), writes `bench/results/*.json` and regenerates the report from them.

`--quick` runs every benchmark small (a smoke test of the whole chain, about 3 minutes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "failover": [],
    "cluster_failover": [],
    "client_failover": [],
    "herd": [],
    "scale": [],
    "idle": [],
    "tls_cost": [],
    "safety": ["--rounds", "2"],
}
QUICK = {
    "failover": ["--graceful-rounds", "5", "--crash-rounds", "2"],
    "cluster_failover": ["--rounds", "2", "--crash-rounds", "1", "--replicas", "3"],
    "client_failover": ["--rounds", "1"],
    "herd": ["--sizes", "10,50", "--rounds", "2"],
    "scale": ["--candidates", "50", "--graceful-rounds", "2", "--crash-rounds", "2",
              "--load-seconds", "3"],
    "idle": ["--seconds", "10", "--warmup", "3"],
    "tls_cost": ["--rounds", "3", "--cold-starts", "2", "--idle-seconds", "5"],
    "safety": ["--rounds", "1"],
}
# Exit 2 with one line on a machine that cannot run a real node (no root, ...).
NEEDS_REAL_NODE = {"client_failover"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(FULL))
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    names = args.only.split(",") if args.only else list(plan)
    for name in names:
        started = time.monotonic()
        print(f"== bench/{name}.py {' '.join(plan[name])}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *plan[name]])
        print(f"== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code == 2 and name in NEEDS_REAL_NODE:  # said why on stderr; the rest still runs
            print(f"== {name}: not run here (no real node)", flush=True)
            continue
        if code != 0:
            return code
    return subprocess.call([sys.executable, str(HERE / "report.py")])


if __name__ == "__main__":
    sys.exit(main())
