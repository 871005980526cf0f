"""Failover latency of leader-sidecar on a real local ZooKeeper ensemble.

Starts a three-server ensemble and N sidecar processes, then repeatedly stops the leader
(SIGTERM: graceful; SIGKILL: crash) and measures, from the signal to the moment another
candidate's role file says `leader`. The stopped candidate is restarted between rounds,
so N stay in the election. Prints median, p99 and max; writes JSON.

Run: `make bench` or `python bench/failover.py --graceful-rounds 50 --crash-rounds 10`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar.lab.candidates import LeaseMonitor, SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": max(values) * 1000,
    }


def settle(members: list[SidecarProcess], timeout: float = 30.0) -> SidecarProcess:
    ok = wait_for(
        lambda: len(leaders(members)) == 1
        and all(m.role() in ("leader", "follower") for m in members),
        timeout,
    )
    if not ok:
        raise SystemExit(f"no single leader: {[(m.identity, m.role()) for m in members]}")
    return leaders(members)[0]


def measure_round(members: list[SidecarProcess], graceful: bool) -> float:
    leader = settle(members)
    others = [m for m in members if m is not leader]
    signalled = time.monotonic()
    if graceful:
        leader.signal(15)
    else:
        leader.signal(9)
    while not any(m.role() == "leader" for m in others):
        time.sleep(0.0002)
    took = time.monotonic() - signalled
    leader.wait(30)
    # Restart the stopped candidate with a fresh role directory state; it joins at the back.
    leader.start()
    settle(members)
    return took


def run(args: argparse.Namespace) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    ensemble = Ensemble(size=3, tick_time_ms=args.tick_ms).start()
    members = [
        SidecarProcess(
            identity=f"app-{i}", zk_hosts=ensemble.connect_string, role_dir=base / f"app-{i}",
            election="bench", session_timeout=args.session_timeout,
        ).start()
        for i in range(args.candidates)
    ]
    try:
        cold_start = time.monotonic()
        settle(members)
        first_leader = time.monotonic() - cold_start
        with LeaseMonitor({m.identity: m.role_dir for m in members}) as monitor:
            graceful = [measure_round(members, True) for _ in range(args.graceful_rounds)]
            crash = [measure_round(members, False) for _ in range(args.crash_rounds)]
        violations = len(monitor.violations())
    finally:
        for member in members:
            member.cleanup()
        ensemble.stop()
    return {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "candidates": args.candidates,
        "session_timeout_s": args.session_timeout,
        "first_leader_after_start_ms": first_leader * 1000,
        "graceful": summary(graceful),
        "crash": summary(crash),
        "two_leader_instants": violations,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--graceful-rounds", type=int, default=50)
    parser.add_argument("--crash-rounds", type=int, default=10)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    parser.add_argument("--tick-ms", type=int, default=200)
    parser.add_argument("--json", type=Path, default=Path("bench/results/failover.json"))
    args = parser.parse_args()
    result = run(args)
    print(f"leader-sidecar failover, {args.candidates} candidates, "
          f"session timeout {args.session_timeout:g}s (real 3-server ZooKeeper on loopback)")
    print(f"{'kind':<10}{'rounds':>8}{'median ms':>12}{'p99 ms':>10}{'max ms':>10}")
    for kind in ("graceful", "crash"):
        row = result[kind]
        assert isinstance(row, dict)
        print(f"{kind:<10}{row['n']:>8}{row['median_ms']:>12.1f}{row['p99_ms']:>10.1f}"
              f"{row['max_ms']:>10.1f}")
    print(f"first leader after a cold start: {result['first_leader_after_start_ms']:.0f} ms "
          "(includes Python start-up)")
    print(f"instants with two unexpired leases: {result['two_leader_instants']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
