"""Shared pieces of the benchmarks: statistics, machine description, JSON output, the kazoo
`Election` recipe as a process, and client-side counters of requests and watch events.

Everything here measures from the outside: the sidecar's code is used unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import statistics
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sidecar.election.record import RECORD_SUFFIX  # noqa: E402
from sidecar.lab.candidates import SidecarProcess  # noqa: E402
from sidecar.lab.ensemble import Ensemble, four_letter  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with 50 samples, p99 is the largest)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, Any]:
    """Seconds in, milliseconds out; keeps the samples for plots."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": max(values) * 1000,
        "min_ms": min(values) * 1000,
        "samples_ms": [round(v * 1000, 3) for v in values],
    }


def machine(ensemble: Ensemble | None = None) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }
    if ensemble is not None:
        try:
            srvr = four_letter(ensemble.servers[0].client_port, "srvr")
            info["zookeeper"] = srvr.splitlines()[0].split(":", 1)[1].strip().split("-")[0]
        except (OSError, IndexError):
            pass
    return info


CPU_GROUPS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def _cpu_group(command: str) -> str:
    program = command.split(" ", 1)[0].rsplit("/", 1)[-1]
    if program in CPU_GROUPS:
        return program
    if "zookeeper" in command and program == "java":
        return "zookeeper"
    if " -m sidecar leave" in command:
        return "preStop hook"
    if " -m sidecar" in command:
        return "sidecars"
    if "bench/" in command:
        return "benchmark (pod runner, watch)"
    return "other"


def cpu_by_process() -> dict[str, tuple[str, float]]:
    """pid -> (group, CPU ms so far) of every process (from /proc: 10 ms ticks)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[pid] = (_cpu_group(command), (int(fields[11]) + int(fields[12])) * 1000 / tick)
    return found


def cpu_spent(before: dict[str, tuple[str, float]],
              after: dict[str, tuple[str, float]]) -> dict[str, float]:
    """CPU ms each group of processes used between the two readings."""
    spent: dict[str, float] = {}
    for pid, (group, ms) in after.items():
        spent[group] = spent.get(group, 0.0) + ms - before.get(pid, (group, 0.0))[1]
    return spent


def mean_cpu(rounds: list[dict[str, float]]) -> dict[str, float]:
    groups = {group for spent in rounds for group in spent}
    return {group: round(statistics.mean(spent.get(group, 0.0) for spent in rounds), 1)
            for group in sorted(groups)} if rounds else {}


def filesystem_type(path: Path) -> str:
    """The type of the file system `path` is on (`tmpfs`, `ext4`, ...), from /proc/mounts."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1]
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


def precompile() -> None:
    """Byte-compile the project as pip does for an installed package, so that no candidate
    process pays for compiling sources (this machine sets PYTHONDONTWRITEBYTECODE)."""
    import compileall

    compileall.compile_dir(str(ROOT / "sidecar"), quiet=1)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def mntr(ensemble: Ensemble) -> dict[int, dict[str, float]]:
    """`mntr` of every running server, numeric values only."""
    found: dict[int, dict[str, float]] = {}
    for server in ensemble.servers:
        if not server.running:
            continue
        try:
            text = four_letter(server.client_port, "mntr")
        except OSError:
            continue
        values: dict[str, float] = {}
        for line in text.splitlines():
            key, _, value = line.partition("\t")
            with contextlib.suppress(ValueError):
                values[key] = float(value)
        found[server.myid] = values
    return found


def mntr_total(snapshot: dict[int, dict[str, float]], key: str) -> float:
    return sum(values.get(key, 0.0) for values in snapshot.values())


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its waited-for children are not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_cpu_ms(pid: int) -> float:
    """CPU time of a process, all its threads, from the scheduler's own accounting
    (nanoseconds, where /proc/<pid>/stat counts ticks of 10 ms)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e6


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the kazoo Election recipe as a process --------------------------------------------


@dataclasses.dataclass
class RecipeProcess(SidecarProcess):
    """`bench/recipe_candidate.py`: kazoo's `Election(path, identity).run(func)`, with the
    same role-file face as a sidecar so the same harness times it; it also logs the wall
    clock instants its `func` starts and ends (`claims.log` in its role directory)."""

    def command(self) -> list[str]:
        return [
            sys.executable, str(ROOT / "bench" / "recipe_candidate.py"),
            "--zk-hosts", self.zk_hosts, "--path", f"/recipe-election/{self.election}",
            "--identity", self.identity, "--role-dir", str(self.role_dir),
            "--session-timeout", str(self.session_timeout),
        ]


def read_claims(role_dir: Path, until: float) -> list[tuple[float, float]]:
    """The [start, end] wall-clock intervals of a recipe candidate's `func`; a claim still
    open (the process never saw it end) lasts until `until`."""
    intervals: list[tuple[float, float]] = []
    start: float | None = None
    try:
        lines = (role_dir / "claims.log").read_text().splitlines()
    except OSError:
        return intervals
    for line in lines:
        kind, _, stamp = line.partition(" ")
        if kind == "start":
            if start is not None:
                intervals.append((start, float(stamp)))
            start = float(stamp)
        elif kind == "end" and start is not None:
            intervals.append((start, float(stamp)))
            start = None
    if start is not None:
        intervals.append((start, until))
    return intervals


def overlaps(claims: dict[str, list[tuple[float, float]]]) -> list[tuple[str, str, float]]:
    """Pairs of claims by different candidates that overlap in time, with the overlap."""
    found = []
    flat = [(who, a, b) for who, spans in claims.items() for a, b in spans]
    for i, (who1, a1, b1) in enumerate(flat):
        for who2, a2, b2 in flat[i + 1:]:
            if who1 != who2 and a1 < b2 and a2 < b1:
                found.append((who1, who2, min(b1, b2) - max(a1, a2)))
    return found


# --- client-side counters ------------------------------------------------------------------


@dataclasses.dataclass
class Counters:
    requests: int = 0
    watch_events: int = 0  # notifications from the election's own znodes
    record_events: int = 0  # notifications of leader-sidecar's leader record
    bytes_received: int = 0  # everything read from the socket, pings included


def instrument(client: Any) -> Counters:
    """Count the requests a KazooClient sends and the watch callbacks it receives.

    kazoo sends every request through `client._call` and hands every watch notification to
    `client.handler.dispatch_callback` as a `Callback` of type `watch`; pings use neither.
    Received bytes are counted where kazoo reads its socket (`ConnectionHandler._read`).
    """
    counters = Counters()
    lock = threading.Lock()
    original_call: Callable[..., Any] = client._call
    original_dispatch: Callable[..., Any] = client.handler.dispatch_callback
    original_read: Callable[..., Any] = client._connection._read

    def call(request: Any, async_object: Any) -> Any:
        with lock:
            counters.requests += 1
        return original_call(request, async_object)

    def dispatch(callback: Any) -> Any:
        if getattr(callback, "type", None) == "watch":
            event = callback.args[0] if callback.args else None
            path = getattr(event, "path", None) or ""
            with lock:
                if path.endswith(RECORD_SUFFIX):
                    counters.record_events += 1
                else:
                    counters.watch_events += 1
        return original_dispatch(callback)

    def read(length: int, timeout: Any) -> Any:
        data = original_read(length, timeout)
        with lock:
            counters.bytes_received += len(data)
        return data

    client._call = call
    client.handler.dispatch_callback = dispatch
    client._connection._read = read
    return counters
