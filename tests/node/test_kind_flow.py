"""The kind flow's own scripts on the real node (`TARGET=local`): `scripts/kind-up.sh` and
`scripts/kind-failover.sh` as a user runs them, with the real helm and kubectl, against
the release of this directory. Only the kind-only steps (`kind create cluster`, `docker
build`, `kind load`) are replaced: the images are built here and imported into the node's
containerd with a tag per build.

Running kind-up.sh on the installed release is a `helm upgrade` that changes every image
tag: a rolling restart of the ensemble and of the application, which must end with one
leader, keep the ZooKeeper credentials, and never show two pods labelled leader.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.lab.candidates import wait_for
from sidecar.lab.cluster.failover import watch_release
from sidecar.lab.cluster.release import ChartRelease
from sidecar.lab.node import chartzk

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[2]
SLACK = 120.0


def run_script(release: ChartRelease, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(release.cluster.tool("helm")).parent
    env = {**os.environ, "TARGET": "local", "KUBECONFIG": str(release.cluster.kubeconfig),
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "PYTHON": sys.executable, "RELEASE": release.name,
           "NAMESPACE": release.namespace, "HELM_TIMEOUT": "8m"}
    result = subprocess.run(["bash", str(REPO / "scripts" / script)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{script}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def zk_credentials(release: ChartRelease) -> str:
    secret = release.get_json("secret", f"{release.name}-zk-auth")
    return "".join(base64.b64decode(value).decode() for value in secret["data"].values())


def images(release: ChartRelease, selector: str) -> set[str]:
    pods = release.get_json("pods", "-l", selector)["items"]
    return {c["image"] for p in pods for c in p["spec"]["containers"]
            + p["spec"].get("initContainers", [])}


def test_kind_up_upgrades_the_release_onto_a_new_build(node_release: ChartRelease) -> None:
    node_release.wait_settled(SLACK)
    credentials = zk_credentials(node_release)
    uids = {p["metadata"]["uid"] for p in node_release.pods()}
    with contextlib.closing(watch_release(node_release)) as watch:
        result = run_script(node_release, "kind-up.sh", timeout=900)
        leader = node_release.wait_settled(SLACK)
        doubles = watch.doubles_since(0.0)
    out = result.stdout
    build = re.search(r"image\.tag=(dev-[0-9a-f]{12})", out)
    assert build, out
    # Every container of the application now runs the build kind-up loaded, in new pods.
    assert images(node_release, node_release.app_selector) == {
        f"localhost/leader-sidecar:{build.group(1)}"}
    assert not uids & {p["metadata"]["uid"] for p in node_release.pods()}
    assert all(image.startswith("localhost/leader-sidecar-lab/zookeeper:3.9.4-")
               for image in images(node_release, chartzk.selector(node_release)))
    # helm test passed (quorum, one leader, the leader Service), and the roles are shown.
    assert re.search(r"Phase:\s+Succeeded", out) and not re.search(r"Phase:\s+Failed", out)
    assert re.search(rf"{leader}\s+2/2\s+Running\s+\d+.*\bleader\b", out), out
    # The rolling restart handed leadership over pod by pod, never to two at once, and
    # the sidecars authenticate with the credentials the first install generated.
    assert doubles == [], doubles
    assert zk_credentials(node_release) == credentials
    # The quorum is back (helm test saw it; a server restarted by its liveness probe on a
    # busy machine may still be rejoining: it must, within the slack).
    assert wait_for(lambda: chartzk.modes(node_release) == chartzk.QUORUM, SLACK, 1.0), \
        chartzk.modes(node_release)


def test_kind_failover_measures_its_four_failovers(node_release: ChartRelease) -> None:
    node_release.wait_settled(SLACK)
    out = run_script(node_release, "kind-failover.sh", timeout=900).stdout
    table = out[out.rindex("failover"):]
    name = node_release.name
    times = {}
    for row in ("graceful delete", r"forced delete \(--grace-period=0\)",
                r"crash \(sidecar SIGKILLed\)"):
        found = re.search(rf"{row}\s+(\d+\.\d\d)s\s+{name}-\d -> {name}-\d", table)
        assert found, table
        times[row.split()[0]] = float(found.group(1))
    # A crash waits for ZooKeeper to expire the dead sidecar's session (the chart's 6 s);
    # a forced delete does not: the sidecar saw its pod gone and left.
    assert times["crash"] > 3.0 and times["forced"] < times["crash"], times
    assert re.search(rf"ZooKeeper leader deleted\s+\d+\.\d\ds\s+{name}-zookeeper-\d -> "
                     rf"{name}-zookeeper-\d", table), table
    assert re.search(r"app leader consistent again\s+\d+\.\d\ds", table), table
    node_release.wait_settled(SLACK)
