"""`leader-sidecar`: the command line. `main(argv)` returns the exit status.

Exit statuses: 0 success; 2 bad configuration (one line on stderr, never a traceback);
3 `status` found no candidates; 1 anything else that stops a one-shot command (for
example ZooKeeper unreachable for `status`). `run` treats an unreachable ZooKeeper as a
runtime fault: it keeps trying, reports `unknown` and is not ready.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from . import __version__
from .config import (
    DEFAULT_PARENT,
    DEFAULT_ROLE_DIR,
    Config,
    ConfigError,
    ZkTls,
    default_identity,
    parse_bool,
    parse_int,
    parse_number,
    validate_election,
    validate_election_parent,
    validate_http_host,
    validate_identity,
    validate_kubeconfig,
    validate_log_level,
    validate_namespace,
    validate_path_text,
    validate_port,
    validate_role_dir,
    validate_role_label,
    validate_session_timeout,
    validate_zk_auth,
    validate_zk_hosts,
    validate_zk_tls,
)

PROG = "leader-sidecar"
MAX_MESSAGE = 400  # characters of an error line
MAX_DEMO_CANDIDATES = 50
MAX_DEMO_ROUNDS = 1_000_000
MAX_DEMO_INTERVAL = 3600.0
DEMO_TICK_MS = (10, 10_000)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from typing import Any, NoReturn, TypeVar

    T = TypeVar("T")

class UsageError(Exception):
    """argparse found bad usage; reported like a ConfigError."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _common_zk(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zk-hosts", help="ZooKeeper connect string (env ZK_HOSTS)")
    parser.add_argument("--election", help="election name (env ELECTION_NAME)")
    parser.add_argument(
        "--election-parent", help=f"parent of the elections (env ELECTION_PARENT, {DEFAULT_PARENT})"
    )
    parser.add_argument("--zk-auth", help="digest credentials user:password (env ZK_AUTH)")
    parser.add_argument(
        "--zk-tls-ca", help="PEM CA bundle: connect over TLS and verify the servers (env ZK_TLS_CA)"
    )
    parser.add_argument("--zk-tls-cert", help="PEM client certificate for TLS (env ZK_TLS_CERT)")
    parser.add_argument("--zk-tls-key", help="PEM key of the client certificate (env ZK_TLS_KEY)")
    parser.add_argument(
        "--session-timeout", help="ZooKeeper session timeout in seconds (env ZK_SESSION_TIMEOUT)"
    )


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags, here so that parsing `run` never imports the lab."""
    parser.add_argument(
        "--rounds", type=int, default=0,
        help="stop after this many failovers and print a summary (default: run until Ctrl-C)",
    )
    parser.add_argument("--candidates", type=int, default=5, help="number of sidecars (5)")
    parser.add_argument(
        "--interval", type=float, default=3.0,
        help="seconds of steady state between two failovers (3)",
    )
    parser.add_argument(
        "--session-timeout", type=float, default=2.0,
        help="ZooKeeper session timeout of the sidecars, seconds (2)",
    )
    parser.add_argument(
        "--tick-ms", type=int, default=200,
        help="ZooKeeper tickTime in ms; sessions may last 2 to 20 ticks (200)",
    )
    parser.add_argument(
        "--no-zk-kill", action="store_true",
        help="do not kill a ZooKeeper server (by default the ensemble's leader is killed once)",
    )


def _run_arguments(run: argparse.ArgumentParser) -> None:
    _common_zk(run)
    run.add_argument("--identity", help="this candidate's name (env POD_NAME; host name)")
    run.add_argument("--namespace", help="pod namespace (env POD_NAMESPACE)")
    run.add_argument("--role-dir", help="role files directory (env ROLE_DIR)")
    run.add_argument("--role-label", help="pod label key for the role (env ROLE_LABEL)")
    run.add_argument("--http-port", help="health/role/metrics port, 0 disables (env HTTP_PORT)")
    run.add_argument("--http-host", help="address the HTTP endpoint binds (env HTTP_HOST)")
    run.add_argument(
        "--elector-port",
        help="serve the leader-elector API (GET / -> {name}) on this port (env ELECTOR_PORT)",
    )
    run.add_argument("--no-k8s", action="store_true", help="never talk to Kubernetes")
    run.add_argument("--kubeconfig", help="kubeconfig outside a cluster (env KUBECONFIG)")
    run.add_argument("--log-level", help="DEBUG, INFO, WARNING (env LOG_LEVEL)")


def _status_arguments(status: argparse.ArgumentParser) -> None:
    _common_zk(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--kubernetes", action="store_true",
        help="also list the group's pods with their role label (needs --namespace)",
    )
    status.add_argument("--namespace", help="namespace of the group's pods (env POD_NAMESPACE)")
    status.add_argument("--kubeconfig", help="kubeconfig outside a cluster (env KUBECONFIG)")


def _leave_arguments(leave: argparse.ArgumentParser) -> None:
    leave.add_argument("--role-dir", help="the running sidecar's role directory (env ROLE_DIR)")


def _demo_command_arguments(demo: argparse.ArgumentParser) -> None:
    _demo_arguments(demo)
    demo.add_argument(
        "--cluster", action="store_true",
        help="the user's flow on a local Kubernetes control plane with the chart installed "
             "by helm (builds the control-plane binaries on first use)",
    )
    demo.add_argument(
        "--node", choices=["auto", "real", "kwok"], default="auto",
        help="--cluster: one real node (kubelet, containerd, runc; needs root) or kwok's "
             "nodes with a pod runner; auto: real where this machine can run it",
    )


def _demo_app_arguments(app: argparse.ArgumentParser) -> None:
    app.add_argument("--port", type=int, default=8080)
    app.add_argument("--role-dir", help="role files directory (env ROLE_DIR)")


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("take part in the election until SIGTERM/SIGINT", _run_arguments),
    "status": ("print the queue of candidates, leader first", _status_arguments),
    "leave": ("make the sidecar of this pod leave the election (its control socket)",
              _leave_arguments),
    "demo": ("local showcase: ZooKeeper ensemble, five sidecars, failovers",
             _demo_command_arguments),
    "demo-app": ("tiny HTTP application that shows the role", _demo_app_arguments),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` one subcommand: a sidecar starting in a
    crowd of pods spends no CPU on the parsers of commands it does not run (a cold start
    is CPU-bound: see docs/benchmarks.md)."""
    parser = _Parser(prog=PROG, description="ZooKeeper leader election sidecar")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, add_arguments) in SUBCOMMANDS.items():
        if only is None or name == only:
            add_arguments(sub.add_parser(name, help=help_text))
    return parser


def _pick(value: Any, env: Mapping[str, str], name: str, default: Any = None) -> Any:
    """A flag wins over its environment variable, which wins over the default."""
    if value is not None:
        return value
    return env.get(name, default) if env.get(name, "") != "" else default


class _Options:
    """Values of flags and their variables, checked with the name of their source in any
    error: `--http-port: HTTP port '1.5' is not a whole number in [0, 65535]`."""

    def __init__(self, args: argparse.Namespace, env: Mapping[str, str]) -> None:
        self.args = args
        self.env = env

    def get(
        self, dest: str, var: str | None, check: Callable[[Any], T], default: Any = None
    ) -> T:
        value = getattr(self.args, dest, None)
        where = "--" + dest.replace("_", "-")
        if value is None:
            if var is not None and self.env.get(var, "") != "":
                value, where = self.env[var], var
            else:
                value, where = default, ""
        return _checked(where, check, value)


def _checked(where: str, check: Callable[[Any], T], value: Any) -> T:
    try:
        return check(value)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}" if where else str(error)) from None


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    """The `run` configuration from its flags and the environment; `ConfigError` (one line
    naming the flag or variable) for anything that can be checked without the network."""
    options = _Options(args, env)
    zk_hosts = options.get("zk_hosts", "ZK_HOSTS", validate_zk_hosts)
    election = options.get("election", "ELECTION_NAME", validate_election)
    timeout = options.get("session_timeout", "ZK_SESSION_TIMEOUT", validate_session_timeout, 6)
    http_port = options.get("http_port", "HTTP_PORT", lambda v: validate_port(v, "HTTP port"), 8081)
    elector_port = options.get(
        "elector_port", "ELECTOR_PORT", lambda v: validate_port(v, "elector port"), 0
    )
    if elector_port and elector_port == http_port:
        raise ConfigError(
            f"elector port {elector_port} is the HTTP port too (--elector-port/ELECTOR_PORT, "
            "--http-port/HTTP_PORT)"
        )
    http_host = options.get("http_host", "HTTP_HOST", validate_http_host, "0.0.0.0")
    namespace = options.get("namespace", "POD_NAMESPACE", validate_namespace)
    k8s_enabled = not (args.no_k8s or parse_bool(env.get("K8S_DISABLED"), "K8S_DISABLED"))
    if args.identity:
        identity, where = args.identity, "--identity"
    elif env.get("POD_NAME"):
        identity, where = env["POD_NAME"], "POD_NAME"
    else:
        identity, where = default_identity(env), "host name"
    identity = _checked(
        where, lambda v: validate_identity(v, k8s_enabled and namespace is not None), identity
    )
    role_label = options.get("role_label", "ROLE_LABEL", validate_role_label, "role")
    zk_auth = options.get("zk_auth", "ZK_AUTH", validate_zk_auth)
    election_parent = options.get(
        "election_parent", "ELECTION_PARENT", validate_election_parent, DEFAULT_PARENT
    )
    kubeconfig = options.get("kubeconfig", "KUBECONFIG", validate_kubeconfig)
    zk_tls = _zk_tls(options)
    log_level = options.get("log_level", "LOG_LEVEL", validate_log_level)
    role_dir = options.get("role_dir", "ROLE_DIR", _role_dir, str(DEFAULT_ROLE_DIR))
    return Config(
        zk_hosts=zk_hosts,
        election=election,
        identity=identity,
        namespace=namespace,
        role_dir=role_dir,
        session_timeout=timeout,
        role_label=role_label,
        http_port=http_port,
        http_host=http_host,
        k8s_enabled=k8s_enabled,
        zk_auth=zk_auth,
        election_parent=election_parent,
        kubeconfig=kubeconfig,
        elector_port=elector_port,
        log_level=log_level,
        zk_tls=zk_tls,
    )


def _zk_tls(options: _Options) -> ZkTls | None:
    def path(what: str) -> Callable[[str | None], str | None]:
        return lambda value: validate_path_text(value, what) if value else None

    return validate_zk_tls(
        options.get("zk_tls_ca", "ZK_TLS_CA", path("ZooKeeper CA path")),
        options.get("zk_tls_cert", "ZK_TLS_CERT", path("ZooKeeper client certificate path")),
        options.get("zk_tls_key", "ZK_TLS_KEY", path("ZooKeeper client key path")),
    )


def _role_dir(value: str) -> Path:
    """Created if missing (`run` writes it); last, so that bad input creates nothing."""
    return validate_role_dir(Path(validate_path_text(value, "role directory")))


def _role_dir_path(value: str) -> Path:
    """A role directory that a command only reads or connects to: not created."""
    return Path(validate_path_text(value, "role directory"))


def _check_status(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """What `status` reads (sidecar/status.py), with its empty-flag-means-unset rule, so
    that bad input fails before a ZooKeeper session is opened."""
    unset = argparse.Namespace(
        **{key: (value if value != "" else None) for key, value in vars(args).items()}
    )
    options = _Options(unset, env)
    options.get("zk_hosts", "ZK_HOSTS", validate_zk_hosts)
    options.get("election", "ELECTION_NAME", validate_election)
    options.get("election_parent", "ELECTION_PARENT", validate_election_parent, DEFAULT_PARENT)
    options.get("zk_auth", "ZK_AUTH", validate_zk_auth)
    _zk_tls(options)
    options.get("session_timeout", None, validate_session_timeout, 6)
    namespace = options.get("namespace", "POD_NAMESPACE", validate_namespace)
    options.get("kubeconfig", "KUBECONFIG", validate_kubeconfig)
    if args.kubernetes and namespace is None:
        raise ConfigError("--kubernetes needs --namespace or POD_NAMESPACE")


def _check_demo(args: argparse.Namespace) -> None:
    _checked("--rounds", lambda v: parse_int(v, "rounds", 0, MAX_DEMO_ROUNDS), args.rounds)
    _checked(
        "--candidates", lambda v: parse_int(v, "candidates", 2, MAX_DEMO_CANDIDATES),
        args.candidates,
    )
    _checked(
        "--interval",
        lambda v: parse_number(v, "interval", 0, MAX_DEMO_INTERVAL, unit=" (seconds)"),
        args.interval,
    )
    _checked("--session-timeout", validate_session_timeout, args.session_timeout)
    _checked("--tick-ms", lambda v: parse_int(v, "tick time (ms)", *DEMO_TICK_MS), args.tick_ms)


def check_arguments(args: argparse.Namespace, env: Mapping[str, str]) -> Config | None:
    """Everything about the command line and the environment that can be checked without
    starting anything; `ConfigError` otherwise. The configuration of `run`, else None."""
    options = _Options(args, env)
    if args.command == "run":
        return build_config(args, env)
    if args.command == "status":
        _check_status(args, env)
    elif args.command in ("leave", "demo-app"):
        options.get("role_dir", "ROLE_DIR", _role_dir_path, str(DEFAULT_ROLE_DIR))
        if args.command == "demo-app":
            options.get("port", None, lambda v: validate_port(v, "port"))
    elif args.command == "demo":
        _check_demo(args)
    return None


def configure(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """Parse and check `argv` and `env`, starting nothing (the role directory of `run` is
    created). Raises `UsageError` or `ConfigError`, which `main` reports with status 2.
    `args.config` is the `Config` of `run`, None for the other commands."""
    args = parse_arguments(argv)
    args.config = check_arguments(args, env)
    return args


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """`build_parser().parse_args`, minus an argparse quirk (before Python 3.13): the value
    of `--flag=--` is an empty list, which every check after it would trip on."""
    words = list(sys.argv[1:] if argv is None else argv)
    only = words[0] if words and words[0] in SUBCOMMANDS else None
    args = build_parser(only).parse_args(words)
    for dest, value in vars(args).items():
        if isinstance(value, list):  # no flag here takes several values
            raise UsageError(f"argument --{dest.replace('_', '-')}: expected one argument")
    return args


def _setup_logging(level: str | None) -> None:
    logging.basicConfig(
        level=(level or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kazoo").setLevel(logging.WARNING)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection until the first verdict. What a sidecar loads before
    it (kazoo, the election: modules, classes, functions) lives as long as the process,
    and a collector walking it again and again costs about 4 % of a cold start. It is on
    again before the faces load: kopf's import and start make much short-lived garbage,
    and a pause through them would only postpone that work into the sidecar's first
    minutes of service."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = getattr(args, "config", None) or build_config(args, env)
    _setup_logging(config.log_level)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with _collector_paused():
        # ZooKeeper first: kazoo is most of what a sidecar loads, and the session is made
        # (a round trip and a quorum commit) while the rest of the sidecar loads.
        from .zk import session_for

        session = session_for(config)
        session.start()
        from .runner import Sidecar

        sidecar = Sidecar(config, session)
        try:
            sidecar.start_election()
        except ConfigError:
            sidecar.stop()
            raise
    sidecar.start_faces()
    stop.wait()
    logging.getLogger(__name__).info("stop signal received; leaving the election")
    sidecar.stop()
    return 0


def cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .status import print_status

    return print_status(args, env)


def cmd_leave(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .control import ControlSocketError, request

    role_dir = Path(_pick(args.role_dir, env, "ROLE_DIR", DEFAULT_ROLE_DIR))
    try:
        status = request(role_dir, "/leave")
    except ControlSocketError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    if status != 202:
        print(f"{PROG}: the sidecar answered {status} to /leave", file=sys.stderr)
        return 1
    print("left the election")
    return 0


def cmd_demo_app(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .demoapp import run

    role_dir = Path(_pick(args.role_dir, env, "ROLE_DIR", DEFAULT_ROLE_DIR))
    return run(role_dir, port=validate_port(args.port, "port"))


def cmd_demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.cluster:
        try:
            from .cluster_demo import run as run_on_cluster
        except ImportError as error:
            raise UsageError(
                f"the cluster demo needs the lab extra ({error.name} is missing): "
                "pip install 'leader-sidecar[lab]'"
            ) from None
        return run_on_cluster(args)
    from .demo import run

    return run(args)


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "status": cmd_status,
    "leave": cmd_leave,
    "demo-app": cmd_demo_app,
}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    environment = os.environ if env is None else env
    try:
        args = configure(argv, environment)
        return COMMANDS[args.command](args, environment)
    except (ConfigError, UsageError) as error:
        print(f"{PROG}: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """`message` as one printable line: argparse quotes some values raw (unrecognized
    arguments, ambiguous options), so newlines, NUL and surrogates are escaped here."""
    text = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in message
    )
    return text if len(text) <= limit else f"{text[:limit]}... (cut)"


def keep_kubernetes_client_out() -> None:
    """The sidecar process never uses the `kubernetes` client (sidecar/kubeapi.py speaks
    to the API), but kopf imports all of it, when it is installed, only to recognise its
    model classes (kopf/_cogs/helpers/thirdparty.py): about 30 MB resident for nothing.
    A `None` in `sys.modules` makes that import fail as if the package were absent, which
    is what kopf expects in an image without it. Only for `run`, in a process of its own."""
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]


def entry() -> None:
    if sys.argv[1:2] == ["run"]:
        keep_kubernetes_client_out()
    sys.exit(main())
