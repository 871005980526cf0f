"""Scale: 200 leader-sidecar candidates on one three-server ensemble.

- cold start: 200 in-process candidates (`inproc.SidecarCandidate`, each with its own
  session) started at once; time until one is leader and all have a verdict;
- steady ZooKeeper load with 200 candidates: requests and packets per second seen by the
  servers (`mntr`), their CPU (the JVMs' utime+stime) and watch count;
- graceful failover: the leader stops (znode deleted), time until the successor leads;
- crash failover: three candidates run as processes at the head of the queue with 197
  in-process ones behind them; each in turn gets SIGKILL, timed until the next leads.

Run: `python bench/scale.py` (`--candidates 50` for a quick look).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, mntr, mntr_total, process_cpu_seconds, summary, write_json
from inproc import SidecarCandidate

from sidecar.lab.candidates import SidecarProcess, wait_for
from sidecar.lab.ensemble import Ensemble


def settled(members: list[SidecarCandidate]) -> SidecarCandidate | None:
    leading = [m for m in members if m.leading()]
    return leading[0] if len(leading) == 1 and all(m.decided() for m in members) else None


def server_load(ensemble: Ensemble, seconds: float) -> dict[str, float]:
    m0 = mntr(ensemble)
    cpu0 = sum(process_cpu_seconds(s.process.pid) for s in ensemble.servers if s.process)
    time.sleep(seconds)
    m1 = mntr(ensemble)
    cpu1 = sum(process_cpu_seconds(s.process.pid) for s in ensemble.servers if s.process)
    rate = {k: (mntr_total(m1, k) - mntr_total(m0, k)) / seconds
            for k in ("zk_packets_received", "zk_packets_sent")}
    return {
        "packets_received_per_s": rate["zk_packets_received"],
        "packets_sent_per_s": rate["zk_packets_sent"],
        "servers_cpu_percent_of_a_core": (cpu1 - cpu0) / seconds * 100,
        "watch_count": mntr_total(m1, "zk_watch_count"),
        "connections": mntr_total(m1, "zk_num_alive_connections"),
        "avg_latency_ms": statistics.fmean(v.get("zk_avg_latency", 0.0) for v in m1.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--graceful-rounds", type=int, default=5)
    parser.add_argument("--crash-rounds", type=int, default=3)
    parser.add_argument("--session-timeout", type=float, default=4.0)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    ensemble = Ensemble(size=3, tick_time_ms=200).start()
    hosts = ensemble.connect_string
    result: dict[str, Any] = {"candidates": args.candidates,
                              "session_timeout_s": args.session_timeout}
    try:
        result["machine"] = machine(ensemble)
        result["idle_servers"] = server_load(ensemble, 3.0)
        # Cold start and graceful failover, all in-process.
        members = [SidecarCandidate(hosts, "scale", f"c{i:03d}", base / "a",
                                    args.session_timeout) for i in range(args.candidates)]
        # The first leader may be elected while later candidates are still starting: a
        # watcher thread notes the instant.
        first_seen: list[float] = []
        starting = threading.Event()

        def watch_first() -> None:
            starting.wait()
            if wait_for(lambda: any(m.leading() for m in members), 60, 0.001):
                first_seen.append(time.monotonic())

        watcher = threading.Thread(target=watch_first, daemon=True)
        watcher.start()
        started = time.monotonic()
        starting.set()
        for member in members:
            member.start()
        started_all = time.monotonic() - started
        watcher.join(70)
        if not first_seen:
            raise SystemExit("no leader")
        first = first_seen[0] - started
        if not wait_for(lambda: settled(members) is not None, 60, 0.01):
            raise SystemExit("no settled election")
        all_decided = time.monotonic() - started
        result["cold_start"] = {"first_leader_ms": first * 1000,
                                "all_verdicts_ms": all_decided * 1000,
                                "start_calls_ms": started_all * 1000}
        print(f"cold start: first leader {first * 1000:.0f} ms, all {args.candidates} verdicts "
              f"{all_decided * 1000:.0f} ms", flush=True)
        time.sleep(2.0)
        result["steady_servers"] = server_load(ensemble, args.load_seconds)
        print(f"steady load: {result['steady_servers']}", flush=True)
        graceful = []
        for _ in range(args.graceful_rounds):
            leader = settled(members)
            assert leader is not None
            others = [m for m in members if m is not leader]
            t0 = time.monotonic()
            stopper = threading.Thread(target=leader.resign)
            stopper.start()
            if not wait_for(lambda o=others: any(m.leading() for m in o), 30, 0.0005):
                raise SystemExit("no successor")
            graceful.append(time.monotonic() - t0)
            stopper.join(30)
            members = others
            wait_for(lambda m=members: settled(m) is not None, 30, 0.01)
            time.sleep(0.5)
        result["graceful"] = summary(graceful)
        print(f"graceful: {[round(g * 1000, 1) for g in graceful]} ms", flush=True)
        for member in reversed(members):
            member.stop()
        # Crash: processes at the head of the queue, in-process candidates behind them.
        heads = []
        for i in range(args.crash_rounds):
            heads.append(SidecarProcess(f"p{i}", hosts, base / "b" / f"p{i}", election="scale-b",
                                        session_timeout=args.session_timeout).start())
            wait_for(lambda h=heads: h[-1].role() in ("leader", "follower"), 30)
        tail = [SidecarCandidate(hosts, "scale-b", f"t{i:03d}", base / "b",
                                 args.session_timeout)
                for i in range(args.candidates - args.crash_rounds)]
        for member in tail:
            member.start()
        wait_for(lambda: all(m.decided() for m in tail), 60, 0.01)
        crash = []
        for i, head in enumerate(heads):
            assert head.role() == "leader", head.role()
            t0 = time.monotonic()
            head.signal(9)
            if i + 1 < len(heads):
                nxt = heads[i + 1]
                ok = wait_for(lambda n=nxt: n.role() == "leader", 30, 0.0005)
            else:
                ok = wait_for(lambda: any(m.leading() for m in tail), 30, 0.0005)
            if not ok:
                raise SystemExit("no successor after a crash")
            crash.append(time.monotonic() - t0)
            head.wait(10)
            time.sleep(0.5)
        result["crash"] = summary(crash)
        print(f"crash: {[round(c * 1000) for c in crash]} ms", flush=True)
        for member in reversed(tail):
            member.stop()
        for head in heads:
            head.cleanup()
    finally:
        ensemble.stop()
        shutil.rmtree(base, ignore_errors=True)
    print_table(result)
    write_json(args.json, result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    n, timeout = result["candidates"], result["session_timeout_s"]
    print(f"\nscale: {n} leader-sidecar candidates on one 3-server ensemble "
          f"(session timeout {timeout:g} s)")
    cold = result["cold_start"]
    print(f"first leader after a cold start: {cold['first_leader_ms']:.0f} ms; "
          f"all verdicts: {cold['all_verdicts_ms']:.0f} ms")
    for kind in ("graceful", "crash"):
        row = result[kind]
        print(f"{kind} failover: {row['n']} rounds, median {row['median_ms']:.1f} ms, "
              f"max {row['max_ms']:.1f} ms")
    idle, steady = result["idle_servers"], result["steady_servers"]
    print(f"{'ZooKeeper (3 servers)':<26}{'idle':>10}{f'{n} candidates':>16}")
    for key in ("packets_received_per_s", "packets_sent_per_s",
                "servers_cpu_percent_of_a_core", "watch_count", "connections"):
        print(f"{key:<26}{idle[key]:>10.1f}{steady[key]:>16.1f}")


if __name__ == "__main__":
    sys.exit(main())
