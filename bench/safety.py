"""Safety under faults: leader-sidecar and kazoo's `Election` recipe, three candidates each.

Faults, each applied to the current leader (or the ensemble) while the others watch:
- `freeze`: SIGSTOP for session timeout + 2 s, then SIGCONT;
- `blackhole`: the leader's connection to the ensemble stops passing bytes (each candidate
  talks through a fault proxy of its own) for session timeout + 2 s, then heals;
- `zk-leader`: the ZooKeeper server leading the ensemble is killed, restarted 3 s later.

Two leaders at once: for leader-sidecar, `LeaseMonitor` (two candidates holding an
unexpired lease at the same instant, from their status files); for the recipe, two
candidates' `func` running at the same wall-clock instant (each logs when `func` starts
and ends; the recipe has no lease). Recovered: 5 s after the fault ends, exactly one
candidate says `leader` and every process is alive.

Run: `python bench/safety.py` (`--rounds 1` for a quick look).
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

from common import RESULTS, RecipeProcess, machine, overlaps, read_claims, write_json

from sidecar.lab.candidates import LeaseMonitor, SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble
from sidecar.lab.faultproxy import FaultyNetwork

FAULTS = ("freeze", "blackhole", "zk-leader")
KINDS = {"leader-sidecar": SidecarProcess, "kazoo-recipe": RecipeProcess}
RECOVERY = 5.0


def one_round(kind: str, fault: str, number: int, ensemble: Ensemble, base: Path,
              timeout: float) -> dict[str, Any]:
    ports = [server.client_port for server in ensemble.servers]
    networks = [FaultyNetwork(ports) for _ in range(3)]
    election = f"safety-{fault}-{number}"
    members = [
        KINDS[kind](f"{kind}-{i}", networks[i].connect_string,
                    base / kind / election / f"c{i}", election=election,
                    session_timeout=timeout).start()
        for i in range(3)
    ]
    monitor = LeaseMonitor({m.identity: m.role_dir for m in members})
    try:
        if not wait_for(lambda: len(leaders(members)) == 1 and all(
                m.role() in ("leader", "follower") for m in members), 30):
            raise SystemExit(f"{kind}: no leader before the fault")
        time.sleep(1.0)
        monitor.__enter__()
        leader = leaders(members)[0]
        index = members.index(leader)
        hold = timeout + 2.0
        if fault == "freeze":
            leader.freeze()
            time.sleep(hold)
            leader.thaw()
        elif fault == "blackhole":
            networks[index].blackhole()
            time.sleep(hold)
            networks[index].heal()
        else:
            server = ensemble.leader()
            assert server is not None
            ensemble.kill(server)
            time.sleep(3.0)
            ensemble.start_server(server)
            ensemble.wait_serving(60, [server])
        time.sleep(RECOVERY)
        now = time.time()
        roles = [m.role() for m in members]
        recovered = roles.count("leader") == 1 and all(m.running for m in members)
        monitor.stop()
        if kind == "leader-sidecar":
            pairs = monitor.violations()
            two = len(pairs)
            overlap = sum(
                max(0.0, (min(a.end, b.end) - max(a.start, b.start)).total_seconds())
                for a, b in pairs)
        else:
            found = overlaps({m.identity: read_claims(m.role_dir, now) for m in members})
            two = len(found)
            overlap = sum(seconds for _, _, seconds in found)
        print(f"  {kind:<15} {fault:<10} round {number}: two-leader instants {two}, "
              f"overlap {overlap:.2f} s, roles {roles}, recovered {recovered}", flush=True)
        return {"two_leader_instants": two, "overlap_s": overlap, "recovered": recovered,
                "roles_after": roles}
    finally:
        for member in members:
            member.cleanup()
        for network in networks:
            network.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    parser.add_argument("--implementations", default=",".join(KINDS))
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--json", type=Path, default=RESULTS / "safety.json")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-safety-"))
    ensemble = Ensemble(size=3, tick_time_ms=200).start()
    results: dict[str, dict[str, Any]] = {}
    try:
        info = machine(ensemble)
        for kind in args.implementations.split(","):
            for fault in args.faults.split(","):
                rounds = [one_round(kind, fault, i, ensemble, base, args.session_timeout)
                          for i in range(args.rounds)]
                results.setdefault(kind, {})[fault] = {
                    "rounds": rounds,
                    "two_leader_instants": sum(r["two_leader_instants"] for r in rounds),
                    "overlap_s": sum(r["overlap_s"] for r in rounds),
                    "recovered": sum(1 for r in rounds if r["recovered"]),
                }
    finally:
        ensemble.stop()
        shutil.rmtree(base, ignore_errors=True)
    result = {"machine": info, "rounds": args.rounds, "session_timeout_s": args.session_timeout,
              "implementations": results}
    print(f"\nsafety under faults, 3 candidates, session timeout {args.session_timeout:g} s, "
          f"{args.rounds} round(s) per fault")
    print(f"{'implementation':<16}{'fault':<11}{'two-leader instants':>20}{'overlap s':>11}"
          f"{'recovered':>11}")
    for kind, faults in results.items():
        for fault, row in faults.items():
            print(f"{kind:<16}{fault:<11}{row['two_leader_instants']:>20}"
                  f"{row['overlap_s']:>11.2f}{row['recovered']:>8}/{args.rounds}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
