"""`make demo-cluster` on a real node (`leader-sidecar demo --cluster --node real`): the
chart on real containers, `kubectl get pods -L role` with RESTARTS that move after a crash,
the leader Service answering a client pod through kube-proxy, each round's times; it ends
cleanly after `--rounds N` and on Ctrl-C, leaving no node behind.

It starts a real node of its own, so it runs after the directory's cluster is down (this
file sorts after test_real_node.py, whose last test takes that cluster down).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidecar.lab.cluster import binaries
from sidecar.lab.node import network
from sidecar.lab.node.cluster import RealNodeCluster, missing_features

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(bool(missing_features()), reason="no real node here")]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_other_node() -> None:
    # Only one real node per machine; the directory's own is down by now, unless only
    # this file was selected.
    RealNodeCluster("test-node", binaries.cache_root() / "node-clusters").down()


def demo(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "sidecar", "demo", "--cluster",
                             "--node", "real", "--interval", "0.5", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def assert_nothing_left() -> None:
    cluster = RealNodeCluster("demo", binaries.cache_root() / "demo-clusters")
    assert cluster.node().leftovers() == []
    assert not cluster.cluster_dir.exists()
    assert not Path(f"/sys/class/net/{network.BRIDGE}").exists()


def test_the_demo_runs_rounds_on_real_containers_and_cleans_up() -> None:
    process = demo("--rounds", "3")
    out, err = process.communicate(timeout=840)
    assert process.returncode == 0, out[-3000:] + err[-3000:]
    assert "one real node (kubelet, containerd, runc" in out
    assert "$ kubectl get pods -n leader-election -L role" in out
    assert re.search(r"demo-zookeeper-0\s+1/1\s+Running", out), out
    # Round 2 crashed the leader's sidecar: the kubelet restarted it, RESTARTS shows it.
    after_crash = out[out.index("round 2: crash"):]
    assert re.search(r"demo-\d\s+2/2\s+Running\s+1\b", after_crash), after_crash
    assert re.search(r"client pod: GET http://demo-leader:8080/ answered by demo-\d "
                     r"\(role leader, epoch \d+\)", out), out
    clients = re.findall(r"first answer from demo-\d after \d+ ms, \d+ requests, \d+ failed, "
                         r"\d+ answered by a non-leader, (\d+) answered as leader by the old "
                         r"one", out)
    assert len(clients) == 3 and clients[0] == "0" and clients[2] == "0", out
    assert "3 failovers" in out
    assert_nothing_left()


def test_ctrl_c_tears_the_demo_down() -> None:
    process = demo()
    assert process.stdout is not None
    started = time.monotonic()
    for line in process.stdout:
        if line.startswith("round 1:"):
            break
        assert time.monotonic() - started < 600, "no round within 10 minutes"
    os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C goes to the group
    out, err = process.communicate(timeout=240)
    assert process.returncode == 130, out[-2000:] + err[-2000:]
    assert "tearing down" in out
    assert_nothing_left()
