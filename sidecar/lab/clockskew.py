"""A sidecar whose clocks run at another rate: Debian's libfaketime, and how to read it.

`ClockSkew(rate)` is the environment that runs a process under libfaketime with every
clock it reads (wall, monotonic, the waits on them) advancing `rate` seconds per real
second: 0.5 is a clock that runs at half speed, the way a sidecar on a node with a bad
clock would see the ZooKeeper servers' session timer run fast. Beside libfaketime it
preloads a small wrapper (`tools/clockskew/clockwait.c`, built here with `cc`): Debian's
libfaketime 0.9.10 does not wrap `sem_clockwait`, which CPython 3.11 uses for every timed
lock wait, so without it a skewed Python process hangs in its first `Event.wait(timeout)`.

The wrapper also writes, as the process starts, the real and the faked wall clock read at
the same instant (`ClockMap`): a checker that reads the process's published wall-clock
times (`since`, `lease_expires`) turns them into the real instants they stand for, as an
application on a node with that clock would act on them.

Guaranteed: the faked clocks are linear in real time at `rate` (libfaketime's own
guarantee; `tests/test_clock_skew.py` checks the rate). Not guaranteed: anything about
clocks the process reads without the C library (none in CPython or kazoo).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import hashlib
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..state import isoformat_z, parse_isoformat_z
from .cluster.binaries import cache_root, tools_dir

LIBFAKETIME_GLOB = "/usr/lib/*/faketime/libfaketimeMT.so.1"  # Debian's `libfaketime`
MAP_ENV = "LSCLOCK_MAP"
DOCUMENT_TIMES = ("since", "lease_expires")


def clock_map_path(role_dir: Path) -> Path:
    """Where a skewed sidecar with this role directory writes its `ClockMap`."""
    return role_dir.with_name(role_dir.name + ".clock")


def on_real_clock(role_dir: Path, document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The status document of the sidecar of `role_dir`, its times on the real clock."""
    clock = ClockMap.read(clock_map_path(role_dir))
    return document if clock is None else clock.real_document(document)


class ClockSkewError(Exception):
    """libfaketime or a C compiler is missing, or the wrapper did not build."""


def available() -> str | None:
    """None when a skewed process can be started here; otherwise why not, in one line."""
    try:
        find_libfaketime()
        ensure_wrapper()
    except (ClockSkewError, OSError) as error:
        return str(error)
    return None


def find_libfaketime() -> Path:
    found = sorted(glob.glob(LIBFAKETIME_GLOB))
    if not found:
        raise ClockSkewError("no libfaketime: install Debian's 'faketime' package "
                             "(apt-get install faketime)")
    return Path(found[0])


def ensure_wrapper() -> Path:
    """`clockwait.so`, built from its source into the cache once per source version."""
    source = tools_dir() / "clockskew" / "clockwait.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    built = cache_root() / "clockskew" / digest / "clockwait.so"
    if built.exists():
        return built
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ClockSkewError("no C compiler to build the clock-skew wrapper: "
                             "apt-get install gcc")
    built.parent.mkdir(parents=True, exist_ok=True)
    partial = built.with_suffix(".partial")
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClockSkewError(f"the clock-skew wrapper did not build: {result.stderr.strip()}")
    partial.replace(built)
    return built


@dataclasses.dataclass(frozen=True)
class ClockSkew:
    rate: float  # the process's seconds per real second

    def __post_init__(self) -> None:
        if not 0.05 <= self.rate <= 20:
            raise ClockSkewError(f"clock rate {self.rate:g} is out of range [0.05, 20]")

    def check(self) -> None:
        """Raise `ClockSkewError` unless a process can be started with this clock."""
        ensure_wrapper()
        find_libfaketime()

    def environment(self, base: Mapping[str, str], map_path: Path) -> dict[str, str]:
        preload = f"{ensure_wrapper()} {find_libfaketime()}"
        return {**base, "LD_PRELOAD": preload, "FAKETIME": f"+0 x{self.rate:.6f}",
                "FAKETIME_NO_CACHE": "1", MAP_ENV: str(map_path)}


@dataclasses.dataclass(frozen=True)
class ClockMap:
    """A skewed process's wall clock against the real one: read once, as it started."""

    real: float
    faked: float
    rate: float

    @classmethod
    def read(cls, path: Path) -> ClockMap | None:
        try:
            real, faked, rate = (float(field) for field in path.read_text().split())
        except (OSError, ValueError):
            return None
        return cls(real, faked, rate) if rate > 0 else None

    def real_time(self, faked: float) -> float:
        """The real instant at which the process's wall clock shows `faked`."""
        return self.real + (faked - self.faked) / self.rate

    def faked_time(self, real: float) -> float:
        return self.faked + (real - self.real) * self.rate

    def real_document(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """A status document with its wall-clock times moved to the real clock."""
        converted = dict(document)
        for key in DOCUMENT_TIMES:
            instant = parse_isoformat_z(document.get(key))
            if instant is not None:
                converted[key] = isoformat_z(dt.datetime.fromtimestamp(
                    self.real_time(instant.timestamp()), dt.UTC))
        return converted
