"""The chaos soak: its schedule replays from the seed, its checker catches what it must,
and a two-minute soak on the real parts ends with no violation."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_digest_acl

from sidecar.election import lease
from sidecar.lab import netns
from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.lab.ensemble import Ensemble
from sidecar.lab.soak import analysis, zkcli
from sidecar.lab.soak.__main__ import main as soak_main
from sidecar.lab.soak.checker import Checker
from sidecar.lab.soak.run import SoakOptions, run_soak
from sidecar.lab.soak.schedule import (
    KINDS,
    ZK_SYNC_LIMIT_TICKS,
    ZK_TICK_SECONDS,
    ScheduleError,
    kinds_for,
    make_schedule,
)
from sidecar.rolefiles import RoleFiles
from sidecar.state import Role, RoleStatus

# Two minutes of this seed try every family and each fault the namespaced network adds.
SHORT_SOAK_SEED = 960
NEW_KINDS = {"zk-partition", "zk-bridge", "zk-asymmetric", "zk-slow-net", "zk-leader-pause",
             "sidecar-split", "clock-skew"}

# --- the schedule ---------------------------------------------------------------------------


def test_same_seed_same_schedule_other_seed_other_schedule():
    kinds = kinds_for(kubernetes=True, namespaces=True)
    first = make_schedule(7, 3600, kinds)
    assert first == make_schedule(7, 3600, kinds)
    assert first != make_schedule(8, 3600, kinds)
    assert sum(episode.planned for episode in first) >= 3600
    kinds_seen = {fault.kind for episode in first for fault in episode.faults}
    assert kinds_seen == set(KINDS), "an hour tries every kind of fault"
    overlapping = [e for e in first if len(e.faults) > 1]
    assert len(overlapping) > len(first) / 4, "faults overlap, not only one at a time"


def test_faults_of_one_episode_touch_different_parts():
    for episode in make_schedule(3, 1200, kinds_for(kubernetes=True)):
        families = [fault.family for fault in episode.faults]
        assert len(families) == len(set(families))


def test_freezes_fall_short_of_and_past_the_session_timeout():
    faults = [f for e in make_schedule(5, 3600, kinds_for(kubernetes=False), 2.0)
              for f in e.faults]
    assert all(f.hold < 2.0 for f in faults if f.kind == "freeze-short")
    assert all(f.hold > 2.0 for f in faults if f.kind == "freeze-long")


def test_without_kubernetes_no_kubernetes_faults():
    assert not [k for k in kinds_for(kubernetes=False) if KINDS[k].kubernetes]
    assert "znode-delete" in kinds_for(kubernetes=False)


def test_faults_between_servers_need_the_namespaced_network():
    on_loopback = kinds_for(kubernetes=True)
    assert not {k for k in on_loopback if KINDS[k].namespaces}
    assert {"clock-skew", "zk-leader-pause"} <= set(on_loopback)
    assert set(kinds_for(kubernetes=True, namespaces=True)) >= NEW_KINDS
    with pytest.raises(ScheduleError, match="zk-bridge need the namespaced network"):
        kinds_for(kubernetes=False, only=["zk-bridge"])


def test_skewed_clocks_stay_inside_the_lease_bound_and_pauses_outlast_sync_limit():
    faults = [f for e in make_schedule(4, 3600, kinds_for(True, namespaces=True), 2.0)
              for f in e.faults]
    rates = [f.amount for f in faults if f.kind == "clock-skew"]
    assert rates and all(lease.slowest_rate_any(2.0) <= r < lease.fastest_ratio(2.0)
                         for r in rates)
    assert min(rates) < 1 < max(rates), "slow clocks and fast ones"
    pauses = [f.hold for f in faults if f.kind == "zk-leader-pause"]
    sync_limit = ZK_SYNC_LIMIT_TICKS * ZK_TICK_SECONDS
    assert pauses and all(sync_limit < hold for hold in pauses)


def test_znode_delete_strikes_the_leader_and_leaves_the_healing_to_the_group():
    faults = [f for e in make_schedule(9, 1800, kinds_for(kubernetes=False)) for f in e.faults
              if f.kind == "znode-delete"]
    assert faults, "half an hour deletes a znode"
    assert {(f.family, f.target, f.hold) for f in faults} == {("election", "leader", 0.0)}


def test_unknown_fault_kind_is_one_line_and_status_2(capsys):
    with pytest.raises(ScheduleError, match="unknown fault kinds: nope"):
        kinds_for(kubernetes=True, only=["kill", "nope"])
    with pytest.raises(SystemExit) as exit_info:
        soak_main(["--seconds", "-3"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("must be above 0: '-3'")
    assert soak_main(["--kinds", "nope", "--out", "/nonexistent/never-made"]) == 2


# --- the operator's znode delete ------------------------------------------------------------


def _node(name: str, sequence: int, identity: str | None, czxid: int) -> zkcli.CandidateNode:
    return zkcli.CandidateNode(name, sequence, identity, czxid)


def test_the_znode_deleted_is_the_one_the_candidate_stands_with():
    old, new, other = (_node("a", 1, "app-1", 100), _node("b", 2, "app-1", 200),
                       _node("c", 3, "app-2", 300))
    nodes = [old, new, other]
    assert zkcli.node_of(nodes, "app-1", epoch=200) is new, "the znode it leads with"
    assert zkcli.node_of(nodes, "app-1", epoch=None) is old, "else its first"
    assert zkcli.node_of(nodes, "app-1", epoch=300) is old, "an epoch of another's znode"
    assert zkcli.node_of(nodes, "app-3") is None


def test_the_operator_uses_the_sidecars_credentials():
    assert zkcli.auth_of(["--zk-auth", "u:p"], {"ZK_AUTH": "x:y"}) == "u:p"
    assert zkcli.auth_of(["--zk-auth=u:p"], {}) == "u:p"
    assert zkcli.auth_of(["--log-level", "DEBUG"], {"ZK_AUTH": "x:y"}) == "x:y"
    assert zkcli.auth_of([], {}) is None


def test_znode_delete_removes_the_candidates_znode_with_the_groups_credentials(
    ensemble: Ensemble,
):
    path = f"/soak-{uuid.uuid4().hex[:8]}"
    acl = [make_digest_acl("group", "secret", all=True)]
    owner = KazooClient(hosts=ensemble.connect_string, auth_data=[("digest", "group:secret")])
    owner.start(timeout=10)
    try:
        owner.create(path, acl=acl)
        for identity in ("app-1", "app-2", "app-3"):
            owner.create(f"{path}/candidate-{uuid.uuid4().hex}-", acl=acl, sequence=True,
                         value=json.dumps({"identity": identity}).encode())
        owner.create(f"{path}/not-a-candidate", acl=acl)
        with pytest.raises(NoAuthError):
            zkcli.delete_candidate(ensemble.connect_string, path, "app-2")
        deleted = zkcli.delete_candidate(ensemble.connect_string, path, "app-2",
                                         zk_auth="group:secret")
        left = zkcli.candidate_nodes(owner, path)
        assert [node.identity for node in left] == ["app-1", "app-3"]
        assert deleted not in {node.name for node in left}
        assert owner.exists(f"{path}/not-a-candidate")
    finally:
        owner.delete(path, recursive=True)
        owner.stop()
        owner.close()


# --- the checker catches what it must -------------------------------------------------------


def _status(identity: str, role: Role, epoch: int | None, lease_seconds: float) -> RoleStatus:
    now = dt.datetime.now(dt.UTC)
    return RoleStatus("soak", identity, role, leader=identity if role is Role.LEADER else None,
                      epoch=epoch, since=now,
                      lease_expires=now + dt.timedelta(seconds=lease_seconds)
                      if role is Role.LEADER else None)


def _check_for(role_dirs: dict[str, Path], seconds: float, act: object) -> dict[str, object]:
    checker = Checker(role_dirs, labels=None)
    stop = threading.Event()
    thread = threading.Thread(target=checker.run, args=(stop,))
    thread.start()
    try:
        assert callable(act)
        act()
        time.sleep(seconds)
    finally:
        stop.set()
        thread.join(5)
    return checker.report()


def test_checker_sees_two_unexpired_leases(tmp_path):
    dirs = {name: tmp_path / name for name in ("a", "b")}
    for path in dirs.values():
        path.mkdir()
    RoleFiles(dirs["a"]).write(_status("a", Role.LEADER, 10, 5))

    def second_leader() -> None:
        time.sleep(0.05)
        RoleFiles(dirs["b"]).write(_status("b", Role.LEADER, 11, 5))

    report = _check_for(dirs, 0.2, second_leader)
    assert report["two_lease_samples"] > 0
    assert report["overlapping_terms"]
    assert report["rate_hz"] > analysis.MIN_RATE_HZ


def test_checker_ignores_an_expired_lease_and_sees_torn_and_lost_files(tmp_path):
    dirs = {name: tmp_path / name for name in ("a", "b")}
    for path in dirs.values():
        path.mkdir()
    RoleFiles(dirs["a"]).write(_status("a", Role.LEADER, 10, -1))  # a frozen old leader

    def tamper() -> None:
        RoleFiles(dirs["b"]).write(_status("b", Role.LEADER, 11, 5))
        time.sleep(0.05)
        (dirs["a"] / "status.json").write_text('{"role": "lea')
        (dirs["b"] / "role").unlink()

    report = _check_for(dirs, 0.2, tamper)
    assert report["two_lease_samples"] == 0
    assert report["torn"] > 0
    assert report["lost"] > 0


# --- the verdict ----------------------------------------------------------------------------


def test_recovery_is_measured_from_the_heal():
    changes = [(0.0, True), (10.0, False), (12.5, True)]
    assert analysis.recovery_after(changes, 5.0) == 0.0
    assert analysis.recovery_after(changes, 11.0) == pytest.approx(1.5)
    assert analysis.recovery_after([(0.0, False)], 1.0) is None


def test_epochs_must_grow_from_one_leader_to_the_next():
    def term(identity: str, start: float, epoch: int | None) -> dict[str, object]:
        return {"identity": identity, "start": start, "epoch": epoch}

    resumed = [term("a", 1, 5), term("a", 2, 5), term("b", 3, 7)]
    assert analysis.epoch_regressions(resumed) == []
    assert len(analysis.epoch_regressions([term("a", 1, 5), term("b", 2, 5)])) == 1
    assert len(analysis.epoch_regressions([term("a", 1, 7), term("b", 2, 5)])) == 1
    assert len(analysis.epoch_regressions([term("a", 1, None)])) == 1


# --- the soak on the real parts -------------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.skipif(netns.available() is not None,
                    reason=f"no network namespaces: {netns.available()}")
def test_two_minute_namespaced_soak_has_no_violation(cluster: LocalCluster, tmp_path: Path):
    """Every ZooKeeper server and sidecar in a network namespace of its own: the faults
    between servers, a paused quorum leader and skewed clocks with all the others."""
    # Planned for two minutes; the run may take a little longer (episodes start when the
    # one before has healed), so it gets the time to reach the last one.
    report = run_soak(SoakOptions(out=tmp_path / "soak", seconds=150, seed=SHORT_SOAK_SEED,
                                  namespaces=True),
                      cluster=cluster, say=lambda line: print(line, flush=True))
    print(analysis.table(report))
    assert report["passed"], json.dumps(report["violations"])
    assert report["network"] == "namespaces"
    assert not report["fault_errors"], report["fault_errors"]
    families = {KINDS[kind].family for kind in report["faults"]}
    assert families == {"process", "zookeeper", "zk-network", "network", "election",
                        "kubernetes"}
    assert set(report["faults"]) >= NEW_KINDS
    # From their namespaces the sidecars reach the apiserver by the name its certificate
    # gives, kopf's watch as well as the publisher's patches.
    logs = "".join(path.read_text(errors="replace")
                   for path in (tmp_path / "soak" / "world" / "logs").glob("*.log"))
    assert "CertificateError" not in logs and "CERTIFICATE_VERIFY_FAILED" not in logs
    assert set(report["no_leader"]["by_family"]) == families
    assert report["terms"] >= 2, "leadership changed hands during the soak"
    assert report["no_leader"]["never"] == 0
    assert report["one_label"]["never"] == 0
