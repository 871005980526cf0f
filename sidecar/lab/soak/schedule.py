"""The soak's fault schedule: a pure function of the seed, the duration and the fault kinds.

The run is a chain of episodes. An episode injects one to three faults of different
families (a sidecar process or its clock, the ZooKeeper servers, the network between
them, one sidecar's network, the election's znodes, the Kubernetes API), each at its
own offset and for its own time, so they overlap; once all of them are healed the world
stays quiet for a gap long enough to recover, then the next episode starts. Recovery is
measured in those gaps.

Guaranteed: the same seed, duration and kinds give the same episodes (fault kinds,
offsets, durations, target selectors, gaps), so a seed replays a schedule. Not
guaranteed: the same targets or instants: a selector such as "the leader" is resolved
when the fault is injected, and an episode starts when the one before it has healed
(restarting a server or the apiserver takes as long as it takes), so a run drifts from
the planned clock; the planned duration counts planned time.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from ...election import lease

SESSION_FACTOR_SHORT = (0.2, 0.6)  # a freeze shorter than the session timeout
SESSION_FACTOR_LONG = (1.3, 2.5)  # one that outlives the session
QUIET_GAP = (5.0, 9.0)  # seconds of no faults after an episode
PAUSE_SYNC_LIMITS = (1.5, 4.0)  # a paused quorum leader: past syncLimit, so followers drop it
ZK_TICK_SECONDS = 0.2  # the soak's ensemble (topology.py)
ZK_SYNC_LIMIT_TICKS = 5


@dataclasses.dataclass(frozen=True)
class FaultKind:
    name: str
    family: str
    description: str
    kubernetes: bool = False
    namespaces: bool = False  # needs the servers and sidecars in network namespaces


KINDS: dict[str, FaultKind] = {kind.name: kind for kind in (
    FaultKind("kill", "process", "SIGKILL a sidecar, restart it after a pause"),
    FaultKind("term", "process", "SIGTERM a sidecar (graceful stop), restart it"),
    FaultKind("freeze-short", "process", "SIGSTOP a sidecar for less than the session timeout"),
    FaultKind("freeze-long", "process", "SIGSTOP a sidecar past the session timeout"),
    # A process fault: it restarts the sidecar (gracefully) under libfaketime and back.
    FaultKind("clock-skew", "process",
              "run a sidecar with every clock at a rate inside the lease's bound"),
    FaultKind("zk-kill", "zookeeper", "kill a ZooKeeper server, restart it"),
    FaultKind("zk-leader-kill", "zookeeper", "kill the ZooKeeper quorum leader, restart it"),
    FaultKind("quorum-loss", "zookeeper", "kill two of three servers, restart them"),
    FaultKind("zk-leader-pause", "zookeeper",
              "SIGSTOP the ZooKeeper quorum leader past syncLimit, then SIGCONT"),
    FaultKind("zk-partition", "zk-network",
              "cut one server from the other two, both ways", namespaces=True),
    FaultKind("zk-bridge", "zk-network",
              "two servers that cannot see each other, both seeing the third",
              namespaces=True),
    FaultKind("zk-asymmetric", "zk-network",
              "drop one direction between two servers", namespaces=True),
    FaultKind("zk-slow-net", "zk-network",
              "loss and a narrow link between the servers", namespaces=True),
    FaultKind("net-cut", "network", "cut a sidecar's ZooKeeper connections"),
    FaultKind("net-blackhole", "network", "drop a sidecar's ZooKeeper traffic silently"),
    FaultKind("net-delay", "network", "delay a sidecar's ZooKeeper traffic"),
    FaultKind("sidecar-split", "network",
              "a sidecar that reaches some servers but not others", namespaces=True),
    # A family of its own: it breaks neither a server, a process nor a connection but the
    # election's data, as an operator can; it may then meet a lost quorum (the delete
    # waits for one) or a frozen leader (whose znode goes while it cannot notice).
    FaultKind("znode-delete", "election",
              "delete the leader's candidate znode with the group's credentials, "
              "as an operator with zkCli would"),
    FaultKind("apiserver-down", "kubernetes", "stop kube-apiserver, start it", True),
    FaultKind("rbac-revoke", "kubernetes", "delete the chart's RoleBinding, restore it", True),
    FaultKind("label-tamper", "kubernetes", "set a wrong `role` label on a pod", True),
    FaultKind("step-down", "kubernetes", "annotate the leader's pod to step down", True),
)}


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault: injected `at` seconds into its episode, healed `hold` seconds later."""

    episode: int
    kind: str
    at: float
    hold: float
    target: str  # "leader", "follower" or "any" (resolved at injection)
    amount: float = 0.0  # kind-specific: a delay in seconds, a freeze as part of T

    @property
    def family(self) -> str:
        return KINDS[self.kind].family

    @property
    def until(self) -> float:
        return self.at + self.hold


class ScheduleError(ValueError):
    """Unknown fault kinds or a duration too short for one episode."""


def kinds_for(kubernetes: bool, only: Sequence[str] | None = None,
              namespaces: bool = False, clocks: bool = True) -> list[str]:
    """The kinds to schedule: `only` (all by default) less those this run cannot make
    (Kubernetes, the namespaced network, a skewed clock: libfaketime and a compiler)."""
    names = list(only) if only else list(KINDS)
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise ScheduleError(f"unknown fault kinds: {', '.join(unknown)} "
                            f"(known: {', '.join(KINDS)})")
    if only and not namespaces:
        needing = [name for name in names if KINDS[name].namespaces]
        if needing:
            raise ScheduleError(f"{', '.join(needing)} need the namespaced network "
                                "(--network namespaces)")
    if only and not clocks and "clock-skew" in names:
        raise ScheduleError("clock-skew needs libfaketime and a C compiler "
                            "(apt-get install faketime gcc)")
    return [name for name in names
            if (kubernetes or not KINDS[name].kubernetes)
            and (namespaces or not KINDS[name].namespaces)
            and (clocks or name != "clock-skew")]


def _fault(rng: random.Random, episode: int, kind: str, at: float, session: float) -> Fault:
    target = rng.choice(("leader", "leader", "follower", "any"))
    if kind == "znode-delete":
        # Always the leader's znode. The draw above is made all the same: a schedule of
        # kinds without this one is the one it was before this kind existed.
        target = "leader"
    amount = 0.0
    if kind in ("kill", "term"):
        hold = rng.uniform(0.3, 3.0)  # until the restart
    elif kind == "freeze-short":
        amount = rng.uniform(*SESSION_FACTOR_SHORT)
        hold = amount * session
    elif kind == "freeze-long":
        amount = rng.uniform(*SESSION_FACTOR_LONG)
        hold = amount * session
    elif kind in ("zk-kill", "zk-leader-kill"):
        hold = rng.uniform(1.0, 5.0)
    elif kind == "quorum-loss":
        hold = rng.uniform(1.0, 6.0)
    elif kind in ("net-cut", "net-blackhole"):
        hold = rng.uniform(0.3, 2.0) * session
    elif kind == "net-delay":
        amount = rng.uniform(0.05, 0.6)
        hold = rng.uniform(1.0, 4.0)
    elif kind in ("apiserver-down", "rbac-revoke"):
        hold = rng.uniform(2.0, 8.0)
    elif kind == "clock-skew":
        # The rate of the skewed sidecar's clocks: inside the lease's bound whatever else
        # fails meanwhile (lease.py, 3.), from the slowest to just below the fastest.
        fastest = lease.fastest_ratio(session) - 0.02
        amount = rng.uniform(lease.slowest_rate_any(session), fastest)
        hold = rng.uniform(8.0, 30.0)
    elif kind == "zk-leader-pause":
        amount = rng.uniform(*PAUSE_SYNC_LIMITS)  # in syncLimits
        hold = amount * ZK_SYNC_LIMIT_TICKS * ZK_TICK_SECONDS
    elif kind in ("zk-partition", "zk-bridge", "zk-asymmetric"):
        hold = rng.uniform(1.0, 8.0)
    elif kind == "zk-slow-net":
        amount = rng.uniform(0.02, 0.2)  # the fraction of packets lost
        hold = rng.uniform(2.0, 8.0)
    elif kind == "sidecar-split":
        hold = rng.uniform(0.5, 2.5) * session
    else:  # label-tamper, step-down, znode-delete: one action, healed by the sidecars
        hold = 0.0
    return Fault(episode, kind, round(at, 3), round(hold, 3), target, round(amount, 3))


@dataclasses.dataclass(frozen=True)
class Episode:
    index: int
    faults: tuple[Fault, ...]
    quiet_after: float  # seconds without faults once every fault is healed

    @property
    def planned(self) -> float:
        return max(fault.until for fault in self.faults) + self.quiet_after


def make_schedule(
    seed: int, duration: float, kinds: Sequence[str], session_timeout: float = 2.0,
) -> list[Episode]:
    """Episodes whose planned lengths add up to at least `duration` seconds."""
    if not kinds:
        raise ScheduleError("no fault kinds to schedule")
    rng = random.Random(seed)
    families: dict[str, list[str]] = {}
    for name in kinds:
        families.setdefault(KINDS[name].family, []).append(name)
    episodes: list[Episode] = []
    planned = 0.0
    while planned < duration:
        index = len(episodes)
        chosen = rng.sample(sorted(families), k=min(len(families), rng.choice((1, 1, 2, 3))))
        faults = tuple(
            _fault(rng, index, rng.choice(families[family]),
                   0.0 if i == 0 else rng.uniform(0.0, 2.0), session_timeout)
            for i, family in enumerate(chosen)
        )
        episodes.append(Episode(index, faults, round(rng.uniform(*QUIET_GAP), 3)))
        planned += episodes[-1].planned
    return episodes
