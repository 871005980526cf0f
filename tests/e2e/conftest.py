"""Fixtures for the user's flow: the chart helm-installed on the session's local control
plane (tests/conftest.py `cluster`), its sidecars run by the pod runner against the
session's real ZooKeeper ensemble, one release (and namespace) per test."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.lab.cluster.release import ChartRelease
from sidecar.lab.ensemble import Ensemble

_releases = itertools.count()


@pytest.fixture
def release(cluster: LocalCluster, ensemble: Ensemble, tmp_path: Path) -> Iterator[ChartRelease]:
    namespace = f"e{next(_releases)}-{uuid.uuid4().hex[:6]}"
    chart = ChartRelease(cluster, namespace, ensemble.connect_string, tmp_path,
                         values={"election": {"name": namespace}})
    try:
        yield chart.install()
    finally:
        chart.close()
