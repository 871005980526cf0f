"""Failover latency of leader-sidecar and of kazoo's `Election` recipe, side by side.

Starts a three-server ensemble and, on it, N candidate processes of each implementation
(`python -m sidecar run`, and `bench/recipe_candidate.py` for the recipe), each group in
an election of its own, all running at once. Then rounds alternate between the groups (so
a busy moment of the machine falls on both alike): stop the group's leader (SIGTERM:
graceful; SIGKILL: crash) and measure from the signal to the moment another candidate's
role file says `leader`, and, for leader-sidecar, until every survivor's status.json
names the new leader. Both write their role file the same way (atomic rename after
fsync). The stopped candidate is restarted between rounds, so N stay in the election.
The project's modules are compiled first, as pip does for an installed package (this
machine sets PYTHONDONTWRITEBYTECODE). Graceful rounds run with the role
directories on tmpfs (as the chart mounts them: emptyDir, medium Memory) and on disk,
each labelled; crash rounds (bounded by the session timeout) on the first only. Also the
time to the first leader on a cold start (process start-up included), cold starts
alternating between the implementations. Prints median, p95,
p99 and max; writes JSON with the samples (for the plot in docs/benchmarks.md).

Run: `make bench` or `python bench/failover.py --graceful-rounds 50 --crash-rounds 50`.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    RESULTS,
    RecipeProcess,
    filesystem_type,
    machine,
    precompile,
    process_cpu_ms,
    process_cpu_seconds,
    summary,
    write_json,
)

from sidecar.lab.candidates import LeaseMonitor, SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble

IMPLEMENTATIONS = {"leader-sidecar": SidecarProcess, "kazoo-recipe": RecipeProcess}
QUIET_WINDOW = 0.15  # seconds without CPU use that count as started up
FILESYSTEMS = {"tmpfs": Path("/dev/shm"), "disk": Path(tempfile.gettempdir())}


def settle(members: list[SidecarProcess], timeout: float = 30.0) -> SidecarProcess:
    ok = wait_for(
        lambda: len(leaders(members)) == 1
        and all(m.role() in ("leader", "follower") for m in members),
        timeout,
    )
    if not ok:
        raise SystemExit(f"no single leader: {[(m.identity, m.role()) for m in members]}")
    return leaders(members)[0]


@dataclasses.dataclass
class Round:
    failover: float  # signal until another candidate's role file says leader
    followers_know: float | None  # signal until every other survivor names the new leader


def measure_round(members: list[SidecarProcess], graceful: bool) -> Round:
    leader = settle(members)
    others = [m for m in members if m is not leader]
    signalled = time.monotonic()
    leader.signal(15 if graceful else 9)
    while not any(m.role() == "leader" for m in others):
        time.sleep(0.0002)
    took = time.monotonic() - signalled
    knew = None
    if not isinstance(others[0], RecipeProcess):  # the recipe tells followers nothing
        new = next(m for m in others if m.role() == "leader")
        if wait_for(lambda: all(_names(m, new.identity) for m in others), 10, 0.0002):
            knew = time.monotonic() - signalled
    leader.wait(30)
    # Restart the stopped candidate with a fresh role directory state; it joins at the back.
    leader.start()
    settle(members)
    quiet(leader)
    return Round(took, knew)


def quiet(member: SidecarProcess, timeout: float = 3.0) -> None:
    """Wait until a restarted candidate has finished starting up (it used no CPU for a
    while): the recipe's writes `follower` before it even connects, and neither may burn
    CPU during the other group's next round."""
    assert member.process is not None
    deadline = time.monotonic() + timeout
    last = process_cpu_seconds(member.process.pid)
    while time.monotonic() < deadline:
        time.sleep(QUIET_WINDOW)
        used = process_cpu_seconds(member.process.pid)
        if used == last:
            return
        last = used


def _names(member: SidecarProcess, leader: str) -> bool:
    status = member.status()
    return status is not None and status.get("leader") == leader


@dataclasses.dataclass
class ColdStart:
    first_leader: float  # seconds from the first start until some role file says leader
    all_decided: float  # ... until every candidate has a verdict
    leader_cpu_ms: float  # CPU the first leader had used by then (all its threads)


def start_group(
    name: str, ensemble: Ensemble, base: Path, args: argparse.Namespace, election: str
) -> tuple[list[SidecarProcess], ColdStart]:
    """Start one implementation's candidates at once in `election`."""
    kind = IMPLEMENTATIONS[name]
    members = [
        kind(
            identity=f"{name}-{i}", zk_hosts=ensemble.connect_string,
            role_dir=base / name / election / f"c{i}", election=election,
            session_timeout=args.session_timeout,
        )
        for i in range(args.candidates)
    ]
    cold_start = time.monotonic()
    for member in members:
        member.start()
    if not wait_for(lambda: bool(leaders(members)), 30, 0.0005):
        raise SystemExit(f"{name}: no leader after a cold start")
    first_leader = time.monotonic() - cold_start
    cpu = process_cpu_ms(leaders(members)[0].pid)
    settle(members)
    return members, ColdStart(first_leader, time.monotonic() - cold_start, cpu)


def cold_starts(
    names: list[str], ensemble: Ensemble, base: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Cold starts, alternating between the implementations (a fresh election each)."""
    starts: dict[str, list[ColdStart]] = {name: [] for name in names}
    for i in range(args.cold_starts):
        for name in names:
            members, started = start_group(name, ensemble, base, args, f"cold-{i}")
            for member in members:
                member.cleanup()
            starts[name].append(started)
    return {
        name: {
            "first_leader": summary([s.first_leader for s in starts[name]]),
            "all_decided": summary([s.all_decided for s in starts[name]]),
            "leader_cpu_ms": summary([s.leader_cpu_ms / 1000 for s in starts[name]]),
        }
        for name in names
    }


def run_filesystem(
    names: list[str], ensemble: Ensemble, base: Path, args: argparse.Namespace, crash_rounds: int
) -> dict[str, Any]:
    """Every implementation's group runs at once; rounds alternate between them, so a busy
    moment of the machine falls on both alike."""
    groups: dict[str, list[SidecarProcess]] = {}
    results: dict[str, Any] = {}
    try:
        results.update(cold_starts(names, ensemble, base, args))
        for name in names:
            groups[name], _ = start_group(name, ensemble, base, args, f"bench-{name}")
        for member in (m for members in groups.values() for m in members):
            quiet(member)
        ours = groups.get("leader-sidecar", [])
        with LeaseMonitor({m.identity: m.role_dir for m in ours}) as monitor:
            for kind, rounds in (("graceful", args.graceful_rounds), ("crash", crash_rounds)):
                samples: dict[str, list[Round]] = {name: [] for name in names}
                for i in range(rounds):
                    for name in names:
                        samples[name].append(measure_round(groups[name], kind == "graceful"))
                        progress(name, kind, i + 1, rounds, samples[name][-1].failover)
                for name in names:
                    results[name][kind] = summary([r.failover for r in samples[name]])
                    knew = [r.followers_know for r in samples[name] if r.followers_know]
                    if knew and kind == "graceful":
                        results[name]["followers_know"] = summary(knew)
    finally:
        for members in groups.values():
            for member in members:
                member.cleanup()
    if "leader-sidecar" in results:  # the recipe writes no lease to check
        results["leader-sidecar"]["two_leader_instants"] = len(monitor.violations())
    return results


def progress(name: str, kind: str, done: int, total: int, took: float) -> None:
    if done == total or done % 10 == 0:
        print(f"  {name} {kind}: {done}/{total} rounds (last {took * 1000:.1f} ms)", flush=True)


def role_base(filesystem: str) -> Path:
    parent = FILESYSTEMS[filesystem]
    kind = filesystem_type(parent)
    if (kind == "tmpfs") != (filesystem == "tmpfs"):
        raise SystemExit(f"{parent} is on {kind}, not on {filesystem}; pick other filesystems")
    return Path(tempfile.mkdtemp(prefix="bench-failover-", dir=parent))


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensemble = Ensemble(size=3, tick_time_ms=args.tick_ms).start()
    filesystems: dict[str, Any] = {}
    names = args.implementations.split(",")
    try:
        info = machine(ensemble)
        for index, filesystem in enumerate(args.filesystems.split(",")):
            base = role_base(filesystem)
            print(f"  {', '.join(names)}: role directories on {filesystem} ({base})", flush=True)
            try:
                results = run_filesystem(
                    names, ensemble, base, args, args.crash_rounds if index == 0 else 0
                )
            finally:
                shutil.rmtree(base, ignore_errors=True)
            filesystems[filesystem] = {
                "path": str(base.parent), "type": filesystem_type(base.parent),
                "implementations": results,
            }
    finally:
        ensemble.stop()
    return {
        "machine": info,
        "candidates": args.candidates,
        "session_timeout_s": args.session_timeout,
        "tick_ms": args.tick_ms,
        "interleaved": True,
        "filesystems": filesystems,
    }


def main() -> int:
    precompile()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--graceful-rounds", type=int, default=50)
    parser.add_argument("--crash-rounds", type=int, default=50)
    parser.add_argument("--cold-starts", type=int, default=30,
                        help="cold starts of each implementation, alternating")
    parser.add_argument("--session-timeout", type=float, default=2.0)
    parser.add_argument("--tick-ms", type=int, default=200)
    parser.add_argument(
        "--implementations", default=",".join(IMPLEMENTATIONS),
        help=f"comma-separated, from {', '.join(IMPLEMENTATIONS)}",
    )
    parser.add_argument(
        "--filesystems", default=",".join(FILESYSTEMS),
        help="where the role directories live, comma-separated, from "
        f"{', '.join(FILESYSTEMS)}; crash rounds run on the first",
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "failover.json")
    args = parser.parse_args()
    result = run(args)
    print_table(result)
    write_json(args.json, result)
    return 0


def ratios(implementations: dict[str, Any]) -> dict[str, float] | None:
    """leader-sidecar's graceful median and p95 over the recipe's, in the same run."""
    ours, theirs = implementations.get("leader-sidecar"), implementations.get("kazoo-recipe")
    if not ours or not theirs or not ours["graceful"]["n"] or not theirs["graceful"]["n"]:
        return None
    return {key: ours["graceful"][f"{key}_ms"] / theirs["graceful"][f"{key}_ms"]
            for key in ("median", "p95")}


def print_table(result: dict[str, Any]) -> None:
    print(f"\nfailover latency, {result['candidates']} candidate processes, session timeout "
          f"{result['session_timeout_s']:g} s (real 3-server ZooKeeper on loopback)")
    print(f"{'role dir on':<13}{'implementation':<16}{'kind':<10}{'rounds':>7}{'median ms':>11}"
          f"{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for filesystem, found in result["filesystems"].items():
        for name, data in found["implementations"].items():
            for kind in ("graceful", "crash"):
                row = data.get(kind, {"n": 0})
                if row["n"]:
                    print(f"{filesystem:<13}{name:<16}{kind:<10}{row['n']:>7}"
                          f"{row['median_ms']:>11.1f}{row['p95_ms']:>9.1f}{row['p99_ms']:>9.1f}"
                          f"{row['max_ms']:>9.1f}")
    for filesystem, found in result["filesystems"].items():
        ratio = ratios(found["implementations"])
        if ratio:
            print(f"{filesystem}: graceful, leader-sidecar / kazoo-recipe: median "
                  f"{ratio['median']:.2f}, p95 {ratio['p95']:.2f}")
        for name, data in found["implementations"].items():
            print(f"{filesystem}: {name}: first leader {data['first_leader']['median_ms']:.0f} "
                  f"ms after a cold start (median of {data['first_leader']['n']}, process "
                  f"start-up included; it had used {data['leader_cpu_ms']['median_ms']:.0f} "
                  f"ms of CPU), all decided {data['all_decided']['median_ms']:.0f} ms"
                  + (f"; instants with two unexpired leases: {data['two_leader_instants']}"
                     if "two_leader_instants" in data else ""))
            if "followers_know" in data:
                know = data["followers_know"]
                print(f"{filesystem}: {name}: every follower names the new leader "
                      f"{know['median_ms']:.1f} ms after the signal (median; p95 "
                      f"{know['p95_ms']:.1f}, max {know['max_ms']:.1f})")


if __name__ == "__main__":
    sys.exit(main())
