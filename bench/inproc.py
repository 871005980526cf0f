"""Many candidates in one process, each with its own ZooKeeper session (KazooClient).

Three implementations with one face (`start`, `leading`, `resign`, `stop`, `counters`):

- `SidecarCandidate`: leader-sidecar's own `Sidecar(config)` (election, status board, role
  files in a temporary directory; HTTP and Kubernetes off), unchanged;
- `RecipeCandidate`: kazoo's `Election(path, identity).run(func)`;
- `NaiveCandidate`: the election the seed warns about: every candidate watches the
  parent's children and re-lists on every change, so one leader change wakes all.

Why in-process: 200 sidecar processes would need about 8 GB and most of two cores just for
Python interpreters, which would measure the machine rather than the election. In-process
candidates still each hold their own session, send their own requests and get their own
watch notifications, which is what the herd and scale benchmarks count.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from common import Counters, instrument
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from sidecar.config import Config
from sidecar.runner import Sidecar
from sidecar.state import Role


class SidecarCandidate:
    name = "leader-sidecar"

    def __init__(self, hosts: str, election: str, identity: str, base: Path,
                 session_timeout: float) -> None:
        config = Config(
            zk_hosts=hosts, election=election, identity=identity, role_dir=base / identity,
            session_timeout=session_timeout, http_port=0, k8s_enabled=False,
        )
        config.role_dir.mkdir(parents=True, exist_ok=True)
        self.sidecar = Sidecar(config)
        self.counters: Counters = instrument(self.sidecar.election.zk.client)

    def start(self) -> None:
        self.sidecar.start()

    def leading(self) -> bool:
        return self.sidecar.current().role is Role.LEADER

    def decided(self) -> bool:
        return self.sidecar.current().role in (Role.LEADER, Role.FOLLOWER)

    def resign(self) -> None:
        self.sidecar.stop()

    def stop(self) -> None:
        self.sidecar.stop()

    @property
    def wakeups(self) -> int:
        return self.sidecar.election.wakeups

    def own_id(self) -> str:
        return self.sidecar.config.identity

    def leader_id(self) -> str | None:
        """Whom this candidate names as leader (status.json `leader`)."""
        return self.sidecar.current().leader


class RecipeCandidate:
    name = "kazoo-recipe"

    def __init__(self, hosts: str, election: str, identity: str, base: Path,
                 session_timeout: float) -> None:
        self.client = KazooClient(hosts=hosts, timeout=session_timeout)
        self.counters = instrument(self.client)
        self.path = f"/recipe-election/{election}"
        self.identity = identity
        self.release = threading.Event()
        self.is_leading = False
        self.claims: list[tuple[float, float | None]] = []
        self.election: Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.client.start(timeout=30)
        self.election = self.client.Election(self.path, self.identity)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the client closes under it at teardown
            self.election.run(self._lead)

    def _lead(self) -> None:
        self.is_leading = True
        self.claims.append((time.time(), None))
        self.release.wait()
        self.is_leading = False
        self.claims[-1] = (self.claims[-1][0], time.time())

    def leading(self) -> bool:
        return self.is_leading

    def decided(self) -> bool:
        return True  # the recipe has no follower verdict: not leading is all it says

    def own_id(self) -> str:
        return self.identity

    def leader_id(self) -> str | None:
        return None  # the recipe tells a candidate only whether it leads itself

    def resign(self) -> None:
        self.release.set()
        if self.thread is not None:
            self.thread.join(10)
        self.stop()

    def stop(self) -> None:
        self.release.set()
        if self.election is not None:
            self.election.cancel()
        self.client.stop()
        self.client.close()


class NaiveCandidate:
    name = "naive"

    def __init__(self, hosts: str, election: str, identity: str, base: Path,
                 session_timeout: float) -> None:
        self.client = KazooClient(hosts=hosts, timeout=session_timeout)
        self.counters = instrument(self.client)
        self.parent = f"/naive-election/{election}"
        self.node: str | None = None
        self.is_leading = False
        self.leader_node: str | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.client.start(timeout=30)
        self.client.ensure_path(self.parent)
        self.node = self.client.create(f"{self.parent}/n-", ephemeral=True, sequence=True)
        self._check()

    def _check(self, event: object = None) -> None:
        try:
            children = self.client.get_children(self.parent, watch=self._check)
        except Exception:  # closing: nothing to decide any more
            return
        with self._lock:
            assert self.node is not None
            self.leader_node = min(children) if children else None
            self.is_leading = self.leader_node == self.node.rsplit("/", 1)[1]

    def leading(self) -> bool:
        return self.is_leading

    def decided(self) -> bool:
        return self.node is not None

    def own_id(self) -> str:
        assert self.node is not None
        return self.node.rsplit("/", 1)[1]

    def leader_id(self) -> str | None:
        return self.leader_node

    def resign(self) -> None:
        self.is_leading = False
        if self.node is not None:
            with contextlib.suppress(NoNodeError):
                self.client.delete(self.node)
        self.stop()

    def stop(self) -> None:
        self.client.stop()
        self.client.close()


KINDS: dict[str, type[SidecarCandidate] | type[RecipeCandidate] | type[NaiveCandidate]] = {
    "leader-sidecar": SidecarCandidate,
    "kazoo-recipe": RecipeCandidate,
    "naive": NaiveCandidate,
}
