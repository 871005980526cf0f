"""`leader-sidecar demo --cluster --rounds N` (what `make demo-cluster ROUNDS=N` runs): the
chart helm-installed on a local control plane of the demo's own, N failovers unattended,
a summary, exit 0, and nothing left behind (no process, no cluster directory, no files).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.lab.cluster import binaries

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_unattended_cluster_demo_runs_three_failovers_and_cleans_up(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "demo", "--cluster", "--node", "kwok",
         "--rounds", "3", "--interval", "0.5"],
        env=env, capture_output=True, text=True, timeout=400, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "$ kubectl get pods -n leader-election -L role" in out
    assert "kubectl delete pod demo-" in out
    assert "SIGKILL to the sidecar of demo-" in out
    assert "leader-election/step-down=now" in out
    assert "3 failovers" in out
    assert "leader Service demo-leader -> 10." in out
    assert not list(tmp.iterdir()), "the demo's files are gone"
    demo_clusters = binaries.cache_root() / "demo-clusters" / "clusters"
    assert not list(demo_clusters.glob("demo-*")), "the demo's cluster is gone"
