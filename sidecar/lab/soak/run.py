"""The soak from start to verdict: world up, checker on, episodes of faults, report.

1. Plan the episodes from the seed (`schedule.py`) and write them out.
2. Start the world (`world.py`), and a local control plane of its own unless one is
   given; wait for one leader (and one leader label).
3. Start the checker process (`checker.py`).
4. Run the episodes: each fault in a thread of its own (inject, hold, heal), the crash
   watch in this one; then the quiet gap. Stop when the planned episodes or the
   duration run out, whichever comes first.
5. Heal everything, give the group a minute to settle on one leader, stop the checker.
6. Analyse (`analysis.py`): `report.json` and `report.md` in the output directory.

Guaranteed: every process and the cluster this started are stopped, whatever failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...k8s import GROUP_LABEL
from .. import clockskew
from ..candidates import leaders, wait_for
from ..cluster import binaries
from ..cluster.control_plane import LocalCluster
from . import analysis
from .schedule import Episode, Fault, kinds_for, make_schedule
from .world import ELECTION, SoakWorld

SETTLE_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class SoakOptions:
    out: Path
    seconds: float = 120.0
    seed: int = 1
    sidecars: int = 5
    session_timeout: float = 2.0
    kubernetes: bool = True
    kinds: tuple[str, ...] = ()
    namespaces: bool = False  # every server and sidecar in a network namespace (`topology`)


@contextlib.contextmanager
def _own_cluster(options: SoakOptions) -> Iterator[LocalCluster]:
    cluster = LocalCluster(f"soak-{os.getpid()}", binaries.cache_root() / "soak-clusters",
                           nodes=1, bin_dir=binaries.ensure_built())
    try:
        yield cluster.up()
    finally:
        cluster.down()


def _settled(world: SoakWorld, kubernetes: bool) -> dict[str, Any]:
    """One leader among running sidecars, everyone else a follower, and one leader label."""
    live = [s for s in world.sidecars if s.running]
    one_leader = len(leaders(live)) == 1 and all(
        s.role() in ("leader", "follower") for s in live)
    state: dict[str, Any] = {"one_leader": one_leader}
    if kubernetes and world.namespace is not None:
        try:
            labels = {p["metadata"]["name"]: (p["metadata"].get("labels") or {}).get("role")
                      for p in world.namespace.pods()}
        except Exception as error:
            return {**state, "one_label": False, "error": str(error)}
        labelled = [name for name, role in labels.items() if role == "leader"]
        state["one_label"] = one_leader and labelled == [leaders(live)[0].identity]
        state["labels"] = labels
    return state


def _settle(world: SoakWorld, kubernetes: bool) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        world.crashes.check()
        state = _settled(world, kubernetes)
        if all(state.values()) or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


class Checker:
    """The checker process: started before the first fault, stopped after the last."""

    def __init__(self, world: SoakWorld, directory: Path, cluster: LocalCluster | None):
        self.out = directory / "checker.json"
        self.ready = directory / "checker.ready"
        config: dict[str, Any] = {
            "role_dirs": {k: str(v) for k, v in world.role_dirs().items()},
            "out": str(self.out), "ready": str(self.ready),
        }
        if cluster is not None and world.namespace is not None:
            config.update(kubeconfig=str(cluster.kubeconfig),
                          namespace=world.namespace.namespace,
                          selector=f"{GROUP_LABEL}={ELECTION}")
        path = directory / "checker-config.json"
        path.write_text(json.dumps(config))
        log = open(directory / "checker.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sidecar.lab.soak.checker", "--config", str(path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        if not wait_for(lambda: self.ready.exists() or self.process.poll() is not None, 60):
            raise RuntimeError("the checker did not start")
        if self.process.poll() is not None:
            raise RuntimeError(f"the checker exited: see {directory / 'checker.log'}")

    def stop(self) -> dict[str, Any]:
        self.process.terminate()
        self.process.wait(60)
        return dict(json.loads(self.out.read_text()))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _run_fault(world: SoakWorld, fault: Fault, start: float, record: dict[str, Any]) -> None:
    time.sleep(max(0.0, start + fault.at - time.monotonic()))
    try:
        record["injected"] = time.time()
        record["target"], heal = world.inject(fault)
    except Exception as error:
        record["error"] = f"inject: {type(error).__name__}: {error}"
        record["healed"] = time.time()
        return
    time.sleep(fault.hold)
    try:
        heal()
    except Exception as error:
        record["error"] = f"heal: {type(error).__name__}: {error}"
    record["healed"] = time.time()


def _wait(world: SoakWorld, seconds: float, until: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until is not None and until()):
        world.crashes.check()
        time.sleep(0.1)


def _episode(world: SoakWorld, episode: Episode) -> dict[str, Any]:
    start = time.monotonic()
    records: list[dict[str, Any]] = [
        {"kind": fault.kind, "planned_at": fault.at, "hold": fault.hold,
         "selector": fault.target, "amount": fault.amount} for fault in episode.faults]
    threads = [threading.Thread(target=_run_fault, args=(world, fault, start, record),
                                name=f"fault-{fault.kind}", daemon=True)
               for fault, record in zip(episode.faults, records, strict=True)]
    for thread in threads:
        thread.start()
    _wait(world, 600, until=lambda: not any(thread.is_alive() for thread in threads))
    healed = max(record.get("healed", time.time()) for record in records)
    _wait(world, episode.quiet_after)
    return {"index": episode.index, "faults": records, "healed": healed,
            "first_injected": min(r.get("injected", healed) for r in records)}


def run_soak(options: SoakOptions, cluster: LocalCluster | None = None,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    directory = options.out
    directory.mkdir(parents=True, exist_ok=True)
    kinds = kinds_for(options.kubernetes, options.kinds, options.namespaces,
                      clocks=clockskew.available() is None)
    episodes = make_schedule(options.seed, options.seconds, kinds, options.session_timeout)
    (directory / "schedule.json").write_text(json.dumps(
        {"seed": options.seed, "seconds": options.seconds, "kinds": kinds,
         "network": "namespaces" if options.namespaces else "loopback",
         "episodes": [dataclasses.asdict(e) for e in episodes]}, indent=1))
    with contextlib.ExitStack() as stack:
        if options.kubernetes and cluster is None:
            say("starting a local control plane for the soak ...")
            cluster = stack.enter_context(_own_cluster(options))
        world = SoakWorld(directory / "world", options.sidecars, options.session_timeout,
                          options.seed, cluster if options.kubernetes else None,
                          token_seconds=int(options.seconds * 3 + 1800),
                          namespaces=options.namespaces)
        stack.callback(world.close)
        world.start()
        if not wait_for(lambda: all(_settled(world, options.kubernetes).values()), 120, 0.2):
            raise RuntimeError(f"no single leader at the start: {_settled(world, True)}")
        checker = Checker(world, directory, cluster if options.kubernetes else None)
        stack.callback(checker.kill)
        say(f"soak: seed {options.seed}, {len(episodes)} episodes planned over "
            f"{options.seconds:g} s, {options.sidecars} sidecars, network: "
            f"{world.topology.name}, kinds: {', '.join(kinds)}")
        done = _run_episodes(world, episodes, options.seconds, say)
        world.thaw_all()
        end_state = _settle(world, options.kubernetes)
        end = time.time()
        checked = checker.stop()
        records = [analysis.EpisodeRecord(
            d["index"], d["faults"], d["healed"],
            done[i + 1]["first_injected"] if i + 1 < len(done) else end)
            for i, d in enumerate(done)]
        crashes = [dataclasses.asdict(crash) for crash in world.crashes.crashes]
        report = analysis.analyse(checked, records, crashes, end_state)
        report.update(seed=options.seed, seconds=options.seconds, sidecars=options.sidecars,
                      kubernetes=options.kubernetes, network=world.topology.name,
                      logged_tracebacks=world.crashes.tracebacks(),
                      end_state=end_state, episode_log=done)
    (directory / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (directory / "report.md").write_text(analysis.table(report) + "\n")
    return report


def _run_episodes(world: SoakWorld, episodes: list[Episode], seconds: float,
                  say: Callable[[str], None]) -> list[dict[str, Any]]:
    started, done = time.monotonic(), []
    for episode in episodes:
        if time.monotonic() - started >= seconds:
            break
        record = _episode(world, episode)
        done.append(record)
        faults = ", ".join(f"{f['kind']}({f.get('target', '?')})" for f in record["faults"])
        say(f"[{time.monotonic() - started:6.0f} s] episode {episode.index}: {faults}"
            + "".join(f"  ! {f['error']}" for f in record["faults"] if f.get("error")))
    return done
