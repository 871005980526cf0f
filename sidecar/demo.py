"""`leader-sidecar demo`: the local showcase, with no Kubernetes.

Starts a real three-server ZooKeeper ensemble (Debian's `zookeeper` package or
`$ZOOKEEPER_HOME`, see `lab.ensemble`) and five sidecars as local processes, each with a
role directory of its own, all in one temporary directory. A table shows every candidate's
role, epoch, the time left on the leader's lease and its ZooKeeper session state; it is
redrawn in place on a terminal and printed as plain lines otherwise (CI logs).

Every few seconds the demo takes the leader down, cycling through SIGTERM (graceful),
SIGKILL (crash) and SIGSTOP (frozen; thawed after its successor leads, when it finds its
session expired and rejoins), and once kills the ZooKeeper server that leads the ensemble
(restarted afterwards). Each failover is printed as it happens with the time from the
signal to the successor's role file saying `leader`. A lease monitor watches the role
files throughout and counts instants at which two candidates held an unexpired lease.

`--rounds N` stops after N failovers with a summary (exit 0). Ctrl-C or SIGTERM stops every
process the demo started and removes its files (exit 130 or 143). A missing ZooKeeper or
Java is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO, TypeVar

from .lab.candidates import LeaseMonitor, SidecarProcess
from .lab.ensemble import Ensemble, EnsembleError, Server
from .state import parse_isoformat_z

ACTIONS = ("SIGTERM", "SIGKILL", "SIGSTOP")
DESCRIBE = {
    "SIGTERM": "graceful stop",
    "SIGKILL": "crash",
    "SIGSTOP": "frozen",
}
FAILOVER_TIMEOUT = 30.0
SETTLE_TIMEOUT = 30.0
REFRESH = 0.1  # seconds between redraws of the live table
T = TypeVar("T")
POLL = 0.001  # seconds between looks at the role files while timing a failover


class DemoStopped(Exception):
    """Ctrl-C or SIGTERM: stop everything and clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class DemoFailed(Exception):
    """The election did not do what the demo waited for (printed, exit 1)."""


@dataclasses.dataclass
class Failover:
    round: int
    action: str
    old: str
    new: str
    seconds: float
    old_epoch: int | None
    new_epoch: int | None


def run(args: argparse.Namespace) -> int:
    if args.candidates < 2:
        print("leader-sidecar: error: the demo needs at least 2 candidates", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="leader-sidecar-demo-"))
    try:
        # The chart's defaults: clients over TLS only, the election under a digest ACL.
        ensemble = Ensemble(size=3, tick_time_ms=args.tick_ms, base_dir=base / "zookeeper",
                            tls=True)
    except EnsembleError as error:
        shutil.rmtree(base, ignore_errors=True)
        print(f"leader-sidecar: error: {error}", file=sys.stderr)
        return 2
    demo = Demo(args, ensemble, base, sys.stdout)
    with _stop_signals() as main_thread:
        try:
            return demo.main()
        except DemoStopped as stopped:
            demo.interrupted(stopped.signum)
            return 128 + stopped.signum
        except DemoFailed as failed:
            demo.clear_table()
            print(f"leader-sidecar: demo failed: {failed}", file=sys.stderr)
            return 1
        finally:
            if main_thread:
                ignore_stop_signals()
            demo.cleanup()


def ignore_stop_signals() -> None:
    """For the teardown: a second Ctrl-C must not interrupt it."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def _stop_signals() -> Iterator[bool]:
    """SIGINT and SIGTERM raise `DemoStopped` in the main thread; restored afterwards.
    Yields whether the handlers are installed (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise DemoStopped(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield True
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class Demo:
    def __init__(
        self, args: argparse.Namespace, ensemble: Ensemble, base: Path, out: TextIO
    ) -> None:
        self.args = args
        self.ensemble = ensemble
        self.base = base
        self.out = out
        self.tty = out.isatty()
        credentials = secrets.token_hex(16)
        self.members = [
            SidecarProcess(
                identity=f"app-{i}", zk_hosts=ensemble.connect_string,
                role_dir=base / f"app-{i}", election="demo",
                session_timeout=args.session_timeout,
                log_path=base / f"app-{i}.log",
                extra_args=(*ensemble.client_args(), "--zk-auth", f"demo:{credentials}"),
            )
            for i in range(args.candidates)
        ]
        self.frozen: set[str] = set()
        self.monitor: LeaseMonitor | None = None
        self.failovers: list[Failover] = []
        self.zk_outage: tuple[int, float, str] | None = None  # (server id, seconds, leader)
        self._drawn_lines = 0
        self._last_draw = 0.0
        self._server_modes: dict[int, str] = {}
        self._last_modes = 0.0
        self.started = time.monotonic()

    # -- the show ----------------------------------------------------------------------

    def main(self) -> int:
        args = self.args
        self.say(
            f"starting a 3-server ZooKeeper ensemble (tickTime {args.tick_ms} ms) "
            f"in {self.base}"
        )
        try:
            self.ensemble.start()
        except EnsembleError as error:
            print(f"leader-sidecar: error: {error}", file=sys.stderr)
            return 2
        self.say(f"ZooKeeper serving at {self.ensemble.connect_string}, over TLS only "
                 "(client certificates of the demo's own CA), the election under a digest "
                 "ACL: the chart's defaults")
        self.say(
            f"starting {len(self.members)} sidecars (session timeout "
            f"{args.session_timeout:g} s), role files under {self.base}/app-N/"
        )
        cold = time.monotonic()
        for member in self.members:
            member.start()
        self.monitor = LeaseMonitor({m.identity: m.role_dir for m in self.members}, 0.005)
        self.monitor.__enter__()
        self.settle()
        self.say(f"first leader after {self.ms(time.monotonic() - cold)} "
                 "(includes starting the Python processes)")
        rounds_done = 0
        zk_done = args.no_zk_kill
        while not args.rounds or rounds_done < args.rounds:
            self.pause(args.interval)
            if not zk_done and rounds_done == 2:
                self.zookeeper_outage()
                zk_done = True
                self.pause(args.interval)
            action = ACTIONS[rounds_done % len(ACTIONS)]
            rounds_done += 1
            self.failover(rounds_done, action)
            self.show_snapshot()
        self.summary()
        return 0

    def failover(self, number: int, action: str) -> None:
        leader = self.settle()
        old_status = leader.status() or {}
        others = [m for m in self.members if m is not leader]
        self.say(f"round {number}: {action} to the leader {leader.identity} "
                 f"(pid {leader.pid}, {DESCRIBE[action]})")
        signalled = time.monotonic()
        leader.signal(getattr(signal, action))
        if action == "SIGSTOP":
            self.frozen.add(leader.identity)
        successor = self.wait_for(
            lambda: next((m for m in others if m.role() == "leader"), None),
            FAILOVER_TIMEOUT, f"no successor within {FAILOVER_TIMEOUT:g} s after {action}",
        )
        took = time.monotonic() - signalled
        new_status = successor.status() or {}
        record = Failover(
            number, action, leader.identity, successor.identity, took,
            _int(old_status.get("epoch")), _int(new_status.get("epoch")),
        )
        self.failovers.append(record)
        line = (f"  failover {number}: {leader.identity} -> {successor.identity} in "
                f"{self.ms(took)} ({DESCRIBE[action]}), epoch {record.old_epoch} -> "
                f"{record.new_epoch}")
        if action == "SIGSTOP":
            line += self.lease_gap(old_status, new_status)
        self.say(line)
        if action == "SIGSTOP":
            self.pause(1.0)
            thawed = time.monotonic()
            leader.thaw()
            self.frozen.discard(leader.identity)
            self.wait_for(
                lambda: leader.role() == "follower" and self.zk_of(leader) == "connected",
                SETTLE_TIMEOUT, f"{leader.identity} did not come back after SIGCONT",
            )
            self.say(f"  {leader.identity} thawed (SIGCONT): found its session expired, "
                     f"rejoined as follower in {self.ms(time.monotonic() - thawed)}")
        else:
            code = leader.wait(30)
            restarted = time.monotonic()
            how = "exited 0" if code == 0 else f"exit status {code}"
            leader.start()
            self.wait_for(
                lambda: leader.role() == "follower", SETTLE_TIMEOUT,
                f"{leader.identity} did not rejoin after a restart",
            )
            self.say(f"  {leader.identity} ({how}) restarted: follower at the back of the "
                     f"queue in {self.ms(time.monotonic() - restarted)}")

    def zookeeper_outage(self) -> None:
        server = self.ensemble.leader()
        if server is None:
            raise DemoFailed("the ZooKeeper ensemble has no leader")
        before = self.settle()
        epoch = _int((before.status() or {}).get("epoch"))
        self.say(f"ZooKeeper: killing server zk{server.myid}, the ensemble's leader "
                 f"(pid {server.process.pid if server.process else '?'})")
        killed = time.monotonic()
        self.ensemble.kill(server)
        self._last_modes = 0.0
        self.pause(0.2)  # let the clients notice before judging "steady"
        leader = self.settle(require_connected=True)
        took = time.monotonic() - killed
        after = _int((leader.status() or {}).get("epoch"))
        same = "same leader and epoch" if (leader is before and after == epoch) else (
            f"leader {before.identity} -> {leader.identity}, epoch {epoch} -> {after}")
        self.say(f"  ensemble re-elected; sidecars steady again in {self.ms(took)} ({same})")
        self.zk_outage = (server.myid, took, same)
        restarted = time.monotonic()
        self.ensemble.start_server(server)
        self.wait_for(lambda: self.serving(server), 60, f"zk{server.myid} did not rejoin")
        self.say(f"  zk{server.myid} restarted: back in the ensemble as "
                 f"{server.mode()} in {self.ms(time.monotonic() - restarted)}")

    def summary(self) -> None:
        if self.tty:  # leave the last table on the screen, the summary goes below it
            self.draw(force=True)
            self._drawn_lines = 0
        w = self.out.write
        w("\nsummary\n")
        w(f"{'round':>5}  {'signal':<8} {'from':<8} {'to':<8} {'failover':>10}  epoch\n")
        for f in self.failovers:
            w(f"{f.round:>5}  {f.action:<8} {f.old:<8} {f.new:<8} {self.ms(f.seconds):>10}  "
              f"{f.old_epoch} -> {f.new_epoch}\n")
        for action in ACTIONS:
            times = [f.seconds for f in self.failovers if f.action == action]
            if times:
                w(f"{action} ({DESCRIBE[action]}): {len(times)} failover(s), median "
                  f"{self.ms(statistics.median(times))}, max {self.ms(max(times))}\n")
        if self.zk_outage is not None:
            myid, took, what = self.zk_outage
            w(f"ZooKeeper leader zk{myid} killed: steady again in {self.ms(took)} ({what})\n")
        violations = self.violations()
        w(f"instants with two unexpired leases: {violations}\n")
        w(f"demo: {len(self.failovers)} failovers, session timeout "
          f"{self.args.session_timeout:g} s, {'OK' if violations == 0 else 'VIOLATION'}\n")
        self.out.flush()

    def interrupted(self, signum: int) -> None:
        self.clear_table()
        name = signal.Signals(signum).name
        self.out.write(f"\n{name}: stopping every process the demo started "
                       f"after {len(self.failovers)} failover(s)\n")
        self.out.flush()

    def cleanup(self) -> None:
        if self.tty:
            self.out.write("\x1b[?25h")  # cursor back on
        for member in self.members:
            member.cleanup()  # thaws a frozen one first, then SIGKILL
        if self.monitor is not None:
            self.monitor.stop()
        self.ensemble.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        with contextlib.suppress(OSError, ValueError):
            self.out.flush()

    def violations(self) -> int:
        if self.monitor is None:
            return 0
        self.monitor.stop()
        return len(self.monitor.violations())

    # -- waiting while the table stays live ----------------------------------------------

    def settle(self, require_connected: bool = False) -> SidecarProcess:
        """Wait for exactly one leader, every running unfrozen candidate with a verdict."""

        def one_leader() -> SidecarProcess | None:
            live = [m for m in self.members if m.running and m.identity not in self.frozen]
            roles = [m.role() for m in live]
            if roles.count("leader") != 1 or any(r not in ("leader", "follower") for r in roles):
                return None
            if require_connected and any(self.zk_of(m) != "connected" for m in live):
                return None
            return live[roles.index("leader")]

        return self.wait_for(one_leader, SETTLE_TIMEOUT, "the election did not settle")

    def wait_for(self, probe: Callable[[], T | bool | None], timeout: float,
                 failure: str) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found is not None and found is not False:
                return found  # type: ignore[return-value]
            self.tick()
            time.sleep(POLL)
        raise DemoFailed(failure)

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick()
            time.sleep(min(REFRESH, max(0.0, end - time.monotonic())))

    def serving(self, server: Server) -> bool:
        return server.mode() in ("leader", "follower")

    # -- output ------------------------------------------------------------------------

    @staticmethod
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"

    def zk_of(self, member: SidecarProcess) -> str | None:
        status = member.status()
        return None if status is None else str(status.get("zk"))

    def lease_gap(self, old: dict[str, object], new: dict[str, object]) -> str:
        lease = parse_isoformat_z(str(old["lease_expires"])) if old.get("lease_expires") else None
        since = parse_isoformat_z(str(new["since"])) if new.get("since") else None
        if lease is None or since is None:
            return ""
        gap = (since - lease).total_seconds()
        return f"; the frozen leader's lease ran out {self.ms(gap)} before that"

    def say(self, line: str) -> None:
        stamp = f"[{time.monotonic() - self.started:6.1f}s] "
        self.clear_table()
        self.out.write(stamp + line + "\n")
        self.out.flush()
        if self.tty:
            self.draw(force=True)

    def clear_table(self) -> None:
        if self.tty and self._drawn_lines:
            self.out.write(f"\x1b[{self._drawn_lines}F\x1b[J")
            self._drawn_lines = 0

    def tick(self) -> None:
        if self.tty:
            self.draw()

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < REFRESH:
            return
        self._last_draw = now
        lines = self.table()
        frame = "\x1b[?25l"
        if self._drawn_lines:
            frame += f"\x1b[{self._drawn_lines}F"
        frame += "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J"
        self.out.write(frame)
        self.out.flush()
        self._drawn_lines = len(lines)

    def show_snapshot(self) -> None:
        """On a terminal the table is live; elsewhere print it once per round."""
        if not self.tty:
            self.out.write("".join(f"    {line}\n" for line in self.table()))
            self.out.flush()

    def table(self) -> list[str]:
        now_wall = dt.datetime.now(dt.UTC)
        rows = [f"{'candidate':<10} {'process':<8} {'role':<9} {'epoch':>12} "
                f"{'lease left':>10}  zk session"]
        for member in self.members:
            if member.identity in self.frozen:
                process = "frozen"
            elif member.running:
                process = "running"
            else:
                process = "dead"
            status = member.status() or {}
            role = str(status.get("role") or member.role() or "-")
            if process == "dead":
                role = f"({role})"
            epoch = status.get("epoch")
            lease = "-"
            expires = status.get("lease_expires")
            if role == "leader" and expires:
                parsed = parse_isoformat_z(str(expires))
                if parsed is not None:
                    left = (parsed - now_wall).total_seconds()
                    lease = f"{left:.2f} s" if left > 0 else "expired"
            zk = str(status.get("zk") or "-")
            rows.append(f"{member.identity:<10} {process:<8} {role:<9} "
                        f"{epoch if epoch is not None else '-':>12} {lease:>10}  {zk}")
        rows.append("ZooKeeper: " + "  ".join(
            f"zk{myid} {mode}" for myid, mode in sorted(self.server_modes().items())))
        return rows

    def server_modes(self) -> dict[int, str]:
        now = time.monotonic()
        if now - self._last_modes >= 1.0:
            self._last_modes = now
            self._server_modes = {
                s.myid: (s.mode() or "starting") if s.running else "down"
                for s in self.ensemble.servers
            }
        return self._server_modes


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
