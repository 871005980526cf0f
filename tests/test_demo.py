"""`leader-sidecar demo`: a short run ends by itself with a summary, a stopped run cleans up,
and a missing ZooKeeper or Java is one line and exit 2.

The demo runs as a subprocess with `TMPDIR` pointing into the test's own directory, so that
"nothing left behind" can be checked exactly: that directory is empty afterwards and no
process on the machine names it on its command line (the sidecars' role directories and
the ZooKeeper servers' configs live there).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidecar.lab.candidates import wait_for

ROOT = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, "-m", "sidecar", "demo"]


def demo_env(tmp: Path, **extra: str) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def assert_nothing_left(tmp: Path) -> None:
    assert wait_for(lambda: not processes_naming(str(tmp)), 5), processes_naming(str(tmp))
    assert list(tmp.iterdir()) == []


def test_demo_rounds_ends_with_a_summary_and_leaves_nothing(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    result = subprocess.run(
        [*DEMO, "--rounds", "3", "--interval", "0.5"], env=demo_env(tmp), cwd=ROOT,
        capture_output=True, text=True, timeout=90,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in result.stderr
    assert "\x1b[" not in out  # no TTY: plain appended lines, no cursor movement
    for number in (1, 2, 3):
        assert f"failover {number}: app-" in out
    assert "summary" in out
    for action in ("SIGTERM", "SIGKILL", "SIGSTOP"):
        assert f"{action} (" in out.split("summary", 1)[1]
    assert "ZooKeeper: killing server zk" in out  # the ZooKeeper leader goes down once
    assert "thawed (SIGCONT)" in out
    assert "instants with two unexpired leases: 0" in out
    assert "demo: 3 failovers" in out
    assert_nothing_left(tmp)


def test_demo_stops_everything_on_sigterm(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    process = subprocess.Popen(
        [*DEMO, "--interval", "0.5", "--no-zk-kill"], env=demo_env(tmp), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "round 2:" in line:  # mid-failover: a leader just got SIGKILL
                break
        assert any("round 2:" in line for line in lines), "".join(lines)
        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, "".join(lines) + rest + errors
    assert "SIGTERM: stopping every process" in rest
    assert "Traceback" not in errors
    assert_nothing_left(tmp)


@pytest.mark.parametrize("missing", ["zookeeper", "java"])
def test_missing_zookeeper_or_java_is_one_line_and_exit_2(tmp_path: Path, missing: str) -> None:
    tmp = tmp_path / "tmp"
    if missing == "zookeeper":
        env = demo_env(tmp, ZOOKEEPER_HOME=str(tmp_path / "no-zookeeper"))
    else:
        env = demo_env(tmp, PATH=str(tmp_path / "empty-bin"))
    result = subprocess.run(
        [*DEMO, "--rounds", "1"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("leader-sidecar: error: ")
    assert ("java" if missing == "java" and Path("/usr/share/java/zookeeper.jar").exists()
            else "ZooKeeper") in lines[0]
    assert list(tmp.iterdir()) == []
