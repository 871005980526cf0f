"""The real node: a local control plane whose one node is a kubelet with containerd and
runc, and the chart installed on it with its defaults (its own three-server ZooKeeper
ensemble with persistence, NetworkPolicies, zkAuth, the native sidecar, Pod Security
`restricted`), only the image names and pull policy changed to the images built here.

One cluster and one release for the whole directory: a first install takes a minute or
two on two cores. Tests that change the release (delete pods, kill containers, uninstall)
run after those that only read it, in file order.

On a machine without what a real node needs (root, overlayfs, network namespaces and
bridges, the bridge netfilter sysctls, cgroups), every test here is skipped with a reason
that names the missing feature.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.release import ChartRelease
from sidecar.lab.node.cluster import CHART_VALUES, RealNodeCluster, missing_features

ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts"


@pytest.fixture(scope="session")
def real_cluster(request: pytest.FixtureRequest) -> Iterator[RealNodeCluster]:
    missing = missing_features()
    if missing:
        pytest.skip(f"a real node needs {', '.join(missing)}")
    cluster = RealNodeCluster("test-node", binaries.cache_root() / "node-clusters")
    cluster.down()  # a session killed before its teardown left one
    try:
        cluster.up(timeout=300)
        yield cluster
    finally:
        if request.session.testsfailed:
            cluster.collect_logs(ARTIFACTS / "real-node")
            node_logs = cluster.node().dir / "logs"
            if node_logs.exists():
                shutil.copytree(node_logs, ARTIFACTS / "real-node" / "node-logs",
                                dirs_exist_ok=True)
        cluster.down()


@pytest.fixture(scope="session")
def node_release(real_cluster: RealNodeCluster, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ChartRelease]:
    namespace = f"real-{uuid.uuid4().hex[:6]}"
    release = ChartRelease(real_cluster, namespace, None, tmp_path_factory.mktemp("real"),
                           values=CHART_VALUES)
    try:
        yield release.install(timeout=420)
    finally:
        release.close()
