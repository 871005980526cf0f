"""`python -m sidecar.lab.soak`: the chaos soak (`make soak SOAK_SECONDS=... SOAK_SEED=...`).

Exit status: 0 when every check held, 1 on any violation, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import netns
from . import analysis
from .run import SoakOptions, run_soak
from .schedule import KINDS, ScheduleError


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 2 <= value <= 50:
        raise argparse.ArgumentTypeError(f"must be from 2 to 50: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.lab.soak",
        description="Random faults against a real ensemble, sidecars and control plane, "
                    "watched by an independent checker.")
    parser.add_argument("--seconds", type=_positive, default=120.0,
                        help="planned length of the fault schedule (default 120)")
    parser.add_argument("--seed", type=int, default=1, help="the schedule's seed (default 1)")
    parser.add_argument("--sidecars", type=_count, default=5, help="candidates (default 5)")
    parser.add_argument("--session-timeout", type=_positive, default=2.0,
                        help="the sidecars' ZooKeeper session timeout (default 2)")
    parser.add_argument("--no-kubernetes", action="store_true",
                        help="no control plane: ZooKeeper, process, network and election "
                             "faults only")
    parser.add_argument("--network", choices=("auto", "namespaces", "loopback"),
                        default="auto",
                        help="namespaces: every ZooKeeper server and sidecar in a network "
                             "namespace of its own, with faults between the servers (needs "
                             "root); loopback: servers on loopback, a fault proxy per "
                             "sidecar; auto (default): namespaces where this machine allows")
    parser.add_argument("--kinds", default="",
                        help=f"comma-separated fault kinds (default all: {', '.join(KINDS)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default soak-results/seed-<seed>-<time>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    out = options.out or Path("soak-results") / (
        f"seed-{options.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    kinds = tuple(k.strip() for k in options.kinds.split(",") if k.strip())
    why_not = netns.available()
    if options.network == "namespaces" and why_not is not None:
        print(f"soak: --network namespaces: {why_not}", file=sys.stderr)
        return 2
    namespaces = options.network == "namespaces" or (
        options.network == "auto" and why_not is None)
    if options.network == "auto" and why_not is not None:
        print(f"soak: on loopback ({why_not})", flush=True)
    try:
        report = run_soak(SoakOptions(
            out=out, seconds=options.seconds, seed=options.seed, sidecars=options.sidecars,
            session_timeout=options.session_timeout, kubernetes=not options.no_kubernetes,
            kinds=kinds, namespaces=namespaces), say=lambda line: print(line, flush=True))
    except ScheduleError as error:
        print(f"soak: {error}", file=sys.stderr)
        return 2
    print()
    print(analysis.table(report))
    print(f"\nreport: {out / 'report.json'}")
    print("PASSED: no violation" if report["passed"] else
          "FAILED: " + ", ".join(f"{k}={v}" for k, v in report["violations"].items() if v))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
