"""What TLS to ZooKeeper costs: the graceful handover, the cold start and idle CPU, with
and without TLS, side by side in the same run.

Two real three-server ensembles on loopback, one plaintext and one serving clients over
TLS only (Netty's secureClientPort, client certificates required: `Ensemble(tls=True)`,
as the chart runs ZooKeeper by default), each with a group of candidates of
leader-sidecar using `--zk-auth` (as the chart does), session timeout 2 s, role
directories on tmpfs. The rounds alternate between the groups, so a busy moment of the
machine falls on both alike. Idle: both groups at once, after the rounds, CPU of the
leader, of one follower and of the three servers of each ensemble over the window.

Run: `python bench/tls_cost.py` (`--rounds 5 --idle-seconds 10` for a quick look).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, precompile, process_cpu_seconds, summary, write_json
from failover import measure_round, quiet, settle

from sidecar.lab.candidates import SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble

MODES = ("plaintext", "TLS")


def start_group(
    ensemble: Ensemble, base: Path, mode: str, election: str, args: argparse.Namespace
) -> tuple[list[SidecarProcess], float]:
    """The group's candidates, started at once; seconds until one says leader."""
    members = [
        SidecarProcess(
            identity=f"{mode}-{i}", zk_hosts=ensemble.connect_string,
            role_dir=base / mode / election / f"c{i}", election=election,
            session_timeout=args.session_timeout,
            extra_args=(*ensemble.client_args(), "--zk-auth", "bench:s3cret"),
        )
        for i in range(args.candidates)
    ]
    started = time.monotonic()
    for member in members:
        member.start()
    if not wait_for(lambda: bool(leaders(members)), 30, 0.0005):
        raise SystemExit(f"{mode}: no leader after a cold start")
    first_leader = time.monotonic() - started
    settle(members)
    return members, first_leader


def idle_cpu(
    groups: dict[str, list[SidecarProcess]], ensembles: dict[str, Ensemble], seconds: float
) -> dict[str, dict[str, float]]:
    """% of one core over `seconds`: each group's leader, its followers (the mean of one:
    the heir renews an anchor, the others only watch), each ensemble's three servers
    together."""
    watched: dict[str, dict[str, list[int]]] = {}
    for mode, members in groups.items():
        leader = settle(members)
        watched[mode] = {
            "leader": [leader.pid], "follower": [m.pid for m in members if m is not leader],
            "zookeeper, 3 servers": [s.process.pid for s in ensembles[mode].servers
                                     if s.process is not None],
        }
    before = {mode: {k: sum(process_cpu_seconds(p) for p in pids) for k, pids in rows.items()}
              for mode, rows in watched.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    per = {"leader": 1, "follower": len(next(iter(watched.values()))["follower"]),
           "zookeeper, 3 servers": 1}
    return {
        mode: {k: (sum(process_cpu_seconds(p) for p in pids) - before[mode][k])
               / elapsed * 100 / per[k]
               for k, pids in rows.items()}
        for mode, rows in watched.items()
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bench-tls-", dir="/dev/shm"))
    ensembles = {mode: Ensemble(size=3, tick_time_ms=200, tls=mode == "TLS") for mode in MODES}
    groups: dict[str, list[SidecarProcess]] = {}
    try:
        for ensemble in ensembles.values():
            ensemble.start()
        info = machine(ensembles["plaintext"])
        cold: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(args.cold_starts):
            for mode in MODES:
                members, took = start_group(ensembles[mode], base, mode, f"cold-{i}", args)
                cold[mode].append(took)
                for member in members:
                    member.cleanup()
        for mode in MODES:
            groups[mode], _ = start_group(ensembles[mode], base, mode, "rounds", args)
            for member in groups[mode]:
                quiet(member)
        handover: dict[str, list[float]] = {mode: [] for mode in MODES}
        followers_know: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(args.rounds):
            for mode in MODES:
                measured = measure_round(groups[mode], graceful=True)
                handover[mode].append(measured.failover)
                if measured.followers_know is not None:
                    followers_know[mode].append(measured.followers_know)
            print(f"  round {i + 1}/{args.rounds}: " + ", ".join(
                f"{mode} {handover[mode][-1] * 1000:.1f} ms" for mode in MODES), flush=True)
        idle = idle_cpu(groups, ensembles, args.idle_seconds)
    finally:
        for members in groups.values():
            for member in members:
                member.cleanup()
        for ensemble in ensembles.values():
            ensemble.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {
        "machine": info, "candidates": args.candidates, "session_timeout_s": args.session_timeout,
        "idle_seconds": args.idle_seconds,
        "modes": {
            mode: {"graceful": summary(handover[mode]),
                   "followers_know": summary(followers_know[mode]),
                   "first_leader": summary(cold[mode]),
                   "idle_cpu_percent": idle[mode]}
            for mode in MODES
        },
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\nTLS to ZooKeeper, {result['candidates']} candidates per group")
    print(f"{'':<12}{'handover p50':>14}{'p95':>9}{'names p50':>11}{'cold start':>12}"
          f"{'idle leader':>13}{'follower':>10}{'ZooKeeper':>11}")
    for mode, row in result["modes"].items():
        cpu = row["idle_cpu_percent"]
        graceful = row["graceful"]
        print(f"{mode:<12}{graceful['median_ms']:>11.1f} ms{graceful['p95_ms']:>6.1f} ms"
              f"{row['followers_know']['median_ms']:>8.1f} ms"
              f"{row['first_leader']['median_ms']:>9.0f} ms"
              f"{cpu['leader']:>12.2f}%{cpu['follower']:>9.2f}%"
              f"{cpu['zookeeper, 3 servers']:>10.2f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cold-starts", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=RESULTS / "tls_cost.json")
    args = parser.parse_args()
    precompile()
    result = run(args)
    print_table(result)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
