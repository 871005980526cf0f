"""A real ZooKeeper ensemble of local Java processes, for the demo, the tests and benchmarks.

Uses the ZooKeeper jar of Debian's `zookeeper` package (or `$ZOOKEEPER_HOME`). Each server
listens on loopback ports chosen at start (or, given `hosts`, on an address of its own and
started through a command of its own: a network namespace of `netns`); `tick_time` is
configurable so that tests may use session timeouts of one or two seconds (the server
allows [2, 20] ticks).

With `tls=True` the servers serve clients over TLS only, as the chart's do: Netty's
`secureClientPort` on the client port, no plain port, and client certificates required
(`ssl.clientAuth=need`), all from a CA of the ensemble's own (`tlsfiles`). Debian's jar
names only part of Netty in its manifest: the rest is added to the classpath.

Guaranteed: `start()` returns once every server answers `srvr` with a mode of `leader` or
`follower`; `stop()` kills every process and removes the data unless told to keep it.
Not guaranteed: anything about ports staying free between `free_port()` and the bind.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from .tlsfiles import EnsembleTls

DEBIAN_JAR = Path("/usr/share/java/zookeeper.jar")
# Netty's parts that Debian's zookeeper.jar leaves out of its Class-Path and that the
# Netty connection factory (TLS) loads.
DEBIAN_NETTY_EXTRA = tuple(
    Path("/usr/share/java") / f"netty-{part}.jar"
    for part in ("codec", "resolver", "transport-native-unix-common")
)
NETTY_FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"


class EnsembleError(Exception):
    """The ensemble could not be found or started."""


def find_zookeeper_classpath() -> str:
    """The classpath of a ZooKeeper server: `$ZOOKEEPER_HOME` first, then Debian's jar."""
    home = os.environ.get("ZOOKEEPER_HOME")
    if home:
        jars = sorted(Path(home).glob("lib/*.jar")) + sorted(Path(home).glob("zookeeper-*.jar"))
        if jars:
            return os.pathsep.join(str(jar) for jar in jars)
        raise EnsembleError(f"ZOOKEEPER_HOME={home} holds no ZooKeeper jars")
    if DEBIAN_JAR.exists():
        extra = [str(jar) for jar in DEBIAN_NETTY_EXTRA if jar.exists()]
        return os.pathsep.join([str(DEBIAN_JAR), *extra])
    raise EnsembleError(
        "no ZooKeeper found: install Debian's 'zookeeper' package "
        "(apt-get install zookeeper) or set ZOOKEEPER_HOME"
    )


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise EnsembleError("no 'java' on PATH: ZooKeeper needs a Java runtime")
    return java


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def four_letter(
    port: int, command: str, timeout: float = 1.0, host: str = "127.0.0.1",
    context: ssl.SSLContext | None = None,
) -> str:
    """Send a four-letter command (`srvr`, `ruok`, `wchc`, ...) and return the answer; over
    TLS with `context` (a TLS ensemble's client context)."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if context is not None:
            sock = stack.enter_context(context.wrap_socket(sock, server_hostname=host))
        sock.sendall(command.encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@dataclasses.dataclass
class Server:
    myid: int
    client_port: int
    quorum_port: int
    election_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    wrapper: tuple[str, ...] = ()  # the command it runs through: `ip netns exec <ns>`
    tls: ssl.SSLContext | None = None  # a TLS ensemble's client context, for `mode`

    @property
    def address(self) -> str:
        return f"{self.host}:{self.client_port}"

    def mode(self) -> str | None:
        """`leader`, `follower`, `standalone`, or None when the server does not serve."""
        try:
            answer = four_letter(self.client_port, "srvr", host=self.host, context=self.tls)
        except OSError:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)


class Ensemble:
    """`size` ZooKeeper servers on loopback, in a temporary directory of their own."""

    def __init__(
        self,
        size: int = 3,
        tick_time_ms: int = 200,
        base_dir: Path | None = None,
        heap_mb: int = 128,
        sync_limit: int = 5,
        hosts: Sequence[tuple[str, tuple[str, ...]]] = (),
        tls: bool = False,
        tls_names: Sequence[str] = (),
    ) -> None:
        """`hosts`: per server, its address and the command it runs through (default:
        loopback, run as is). `tls`: clients over TLS only (see the module's text), with a
        server certificate for `tls_names` (default: the servers' addresses)."""
        self.size = size
        self.sync_limit = sync_limit
        self.tick_time_ms = tick_time_ms
        self.heap_mb = heap_mb
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="zk-ensemble-"))
        self.classpath = find_zookeeper_classpath()
        self.java = find_java()
        self.servers = [
            Server(
                myid=i + 1,
                client_port=free_port(),
                quorum_port=free_port(),
                election_port=free_port(),
                data_dir=self.base_dir / f"server{i + 1}",
            )
            for i in range(size)
        ]
        for server, (host, wrapper) in zip(self.servers, hosts, strict=False):
            server.host, server.wrapper = host, wrapper
        self.tls: EnsembleTls | None = None
        if tls:
            try:  # cryptography: only where TLS is asked for
                from .tlsfiles import ensemble_tls
            except ImportError as error:
                raise EnsembleError(f"a TLS ensemble needs {error.name or 'cryptography'}: "
                                    "pip install 'leader-sidecar[lab]'") from None
            self.tls = ensemble_tls(
                self.base_dir / "tls", tls_names or [server.host for server in self.servers]
            )
            context = client_context(self.tls)
            for server in self.servers:
                server.tls = context

    def client_args(self) -> tuple[str, ...]:
        """The sidecar's flags for this ensemble's TLS (none without TLS)."""
        if self.tls is None:
            return ()
        return ("--zk-tls-ca", str(self.tls.ca), "--zk-tls-cert", str(self.tls.client.cert),
                "--zk-tls-key", str(self.tls.client.key))

    def kazoo_options(self) -> dict[str, object]:
        """A KazooClient's arguments for this ensemble's TLS, as the sidecar connects."""
        if self.tls is None:
            return {}
        return {"use_ssl": True, "verify_certs": True, "check_hostname": True,
                "ca": str(self.tls.ca), "certfile": str(self.tls.client.cert),
                "keyfile": str(self.tls.client.key)}

    @property
    def connect_string(self) -> str:
        return ",".join(server.address for server in self.servers)

    @property
    def min_session_timeout(self) -> float:
        return 2 * self.tick_time_ms / 1000

    @property
    def max_session_timeout(self) -> float:
        return 20 * self.tick_time_ms / 1000

    def _write_config(self, server: Server) -> Path:
        server.data_dir.mkdir(parents=True, exist_ok=True)
        (server.data_dir / "myid").write_text(f"{server.myid}\n")
        lines = [
            f"tickTime={self.tick_time_ms}",
            "initLimit=10",
            f"syncLimit={self.sync_limit}",
            f"dataDir={server.data_dir}",
            *self._client_port_lines(server),
            "4lw.commands.whitelist=*",
            "admin.enableServer=false",
            "reconfigEnabled=false",
            "standaloneEnabled=false",
            "maxClientCnxns=0",
            # Fast leader election retries quickly on loopback after a server is killed.
            "cnxTimeout=500",
        ]
        lines += [
            f"server.{peer.myid}={peer.host}:{peer.quorum_port}:{peer.election_port}"
            for peer in self.servers
        ]
        config = server.data_dir / "zoo.cfg"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _client_port_lines(self, server: Server) -> list[str]:
        if self.tls is None:
            return [f"clientPort={server.client_port}", f"clientPortAddress={server.host}"]
        return [
            f"secureClientPort={server.client_port}",
            f"secureClientPortAddress={server.host}",
            f"serverCnxnFactory={NETTY_FACTORY}",
            f"ssl.keyStore.location={self.tls.server.keystore}",
            "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={self.tls.ca}",
            "ssl.trustStore.type=PEM",
            "ssl.clientAuth=need",
        ]

    def start_server(self, server: Server) -> None:
        if server.running:
            return
        config = self._write_config(server)
        log = open(server.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        command = [
            *server.wrapper,
            self.java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
            "-Dzookeeper.admin.enableServer=false",
            "-cp",
            self.classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(config),
        ]
        try:
            server.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self, timeout: float = 60.0) -> Ensemble:
        # The servers run in sessions of their own (a Ctrl-C meant for us must not kill
        # them mid-test), so make sure an exiting interpreter takes them along.
        atexit.register(self.stop)
        for server in self.servers:
            self.start_server(server)
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 60.0, servers: list[Server] | None = None) -> None:
        """Wait until the given (default: all running) servers serve in a quorum."""
        deadline = time.monotonic() + timeout
        pending = servers if servers is not None else [s for s in self.servers if s.running]
        while time.monotonic() < deadline:
            for server in pending:
                if server.process is not None and server.process.poll() is not None:
                    raise EnsembleError(
                        f"ZooKeeper server {server.myid} exited: see {server.data_dir}/server.log"
                    )
            if all(server.mode() in ("leader", "follower") for server in pending):
                return
            time.sleep(0.1)
        raise EnsembleError(f"ZooKeeper ensemble did not form a quorum within {timeout:g}s")

    def leader(self) -> Server | None:
        for server in self.servers:
            if server.running and server.mode() == "leader":
                return server
        return None

    def kill(self, server: Server) -> None:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)
        server.process = None

    def restart(self, server: Server) -> None:
        self.kill(server)
        self.start_server(server)

    def stop(self, keep_data: bool = False) -> None:
        for server in self.servers:
            if server.process is not None and server.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(timeout=10)
            server.process = None
        if self._own_dir and not keep_data:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            atexit.unregister(self.stop)

    def __enter__(self) -> Ensemble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def client_context(tls: EnsembleTls) -> ssl.SSLContext:
    """A client's TLS context for an ensemble of `tls`: its CA, its client certificate.
    The lab's probe of a server by address: the chain is verified, the name is not (a
    test may give the servers a certificate for another name)."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.check_hostname = False
    context.load_cert_chain(str(tls.client.cert), str(tls.client.key))
    return context


@contextlib.contextmanager
def running_ensemble(size: int = 3, tick_time_ms: int = 200) -> Iterator[Ensemble]:
    ensemble = Ensemble(size=size, tick_time_ms=tick_time_ms)
    try:
        yield ensemble.start()
    finally:
        ensemble.stop()
