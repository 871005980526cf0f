"""Host processes of the real node (containerd, kubelet, kube-proxy, the provisioner, the
NetworkPolicy agent), and the sweep that leaves nothing of them behind.

Each process starts in a session of its own, so that it outlives `make cluster-up`, with
its output in `<node>/logs/<name>.log` and its pid in `<node>/pids/<name>.pid`.

Guaranteed by `sweep()`: every process of ours is gone (the pid files' processes, every
process whose executable is in the node's bin directory, e.g. containerd's shims, and
every process in a `kubepods` cgroup), every mount under the node's directory is
unmounted (deepest first), and every `kubepods` cgroup directory is removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
POD_CGROUP = "kubepods"


# The processes this interpreter started, kept so that they are reaped when stopped (and
# never collected while they run, which Python reports as a ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


def start(node_dir: Path, name: str, command: list[str],
          env: dict[str, str] | None = None) -> int:
    (node_dir / "logs").mkdir(parents=True, exist_ok=True)
    (node_dir / "pids").mkdir(parents=True, exist_ok=True)
    with (node_dir / "logs" / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True, env={**os.environ, **(env or {})})
    (node_dir / "pids" / f"{name}.pid").write_text(f"{process.pid}\n")
    _children[process.pid] = process
    return process.pid


def with_own_run(run_dir: Path, command: list[str]) -> list[str]:
    """`command` in a mount namespace of its own where `run_dir` is `/var/run` (the
    host's `/run`, through the symlink, on Debian): for a program that reads fixed paths
    there (client-go's in-cluster credentials, an NRI plugin's socket) without touching
    the host's. The namespace is private, so the mount never shows on the host, and it
    ends with the process; `unshare` and `sh` exec, so the pid is the program's."""
    return ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'mount --bind "$0" /var/run && exec "$@"', str(run_dir), *command]


def pid_of(node_dir: Path, name: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((node_dir / "pids" / f"{name}.pid").read_text())
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def running(node_dir: Path, name: str) -> bool:
    pid = pid_of(node_dir, name)
    return pid is not None and alive(pid)


def log_tail(node_dir: Path, name: str, lines: int = 3) -> str:
    with contextlib.suppress(OSError):
        text = (node_dir / "logs" / f"{name}.log").read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])
    return ""


def stop(node_dir: Path, name: str, grace: float = 10.0) -> None:
    pid = pid_of(node_dir, name)
    if pid is None:
        return
    _terminate([pid], grace)
    (node_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)


def _terminate(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        child = _children.pop(pid, None)
        if child is not None:
            child.wait(timeout=10)


def _exe_in(pid: int, bin_dir: Path) -> bool:
    with contextlib.suppress(OSError):
        return Path(os.readlink(f"/proc/{pid}/exe")).parent == bin_dir.resolve()
    return False


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def pod_cgroups() -> list[Path]:
    """Every `kubepods` cgroup directory, deepest first, in every hierarchy."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        tops = [hierarchy / POD_CGROUP, hierarchy / f"{POD_CGROUP}.slice"]
        for top in tops:
            if top.is_dir():
                found += sorted((d for d in top.rglob("*") if d.is_dir()),
                                key=lambda d: len(d.parts), reverse=True)
                found.append(top)
    return found


def _cgroup_pids(cgroups: list[Path]) -> list[int]:
    pids: set[int] = set()
    for cgroup in cgroups:
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
    return sorted(pids)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under `root`, deepest first."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def sweep(node_dir: Path, bin_dir: Path) -> list[str]:
    """Kill, unmount and remove what the node left; returns what it found to kill."""
    found = []
    for pid_file in sorted((node_dir / "pids").glob("*.pid")):
        pid = pid_of(node_dir, pid_file.stem)
        if pid is not None and alive(pid) and _exe_in(pid, bin_dir):
            found.append(f"{pid_file.stem} ({pid})")
            _terminate([pid], 5.0)
        pid_file.unlink()
    strays = [pid for pid in _all_pids() if pid != os.getpid() and _exe_in(pid, bin_dir)]
    strays += _cgroup_pids(pod_cgroups())
    if strays:
        found.append(f"{len(strays)} container or shim processes")
        _terminate(strays, 2.0)
    for point in mounts_under(node_dir):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    for cgroup in pod_cgroups():
        with contextlib.suppress(OSError):
            cgroup.rmdir()
    return found


def leftovers(node_dir: Path, bin_dir: Path) -> list[str]:
    """What `sweep()` must have removed, if any of it is still there."""
    left = [f"process {pid}" for pid in _all_pids() if _exe_in(pid, bin_dir)]
    left += [f"mount {point}" for point in mounts_under(node_dir)]
    left += [f"cgroup {cgroup}" for cgroup in pod_cgroups()]
    return left
