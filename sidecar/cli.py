"""`leader-sidecar`: the command line. `main(argv)` returns the exit status.

Exit statuses: 0 success; 2 bad configuration (one line on stderr, never a traceback);
3 `status` found no candidates; 1 anything else that stops a one-shot command (for
example ZooKeeper unreachable for `status`). `run` treats an unreachable ZooKeeper as a
runtime fault: it keeps trying, reports `unknown` and is not ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .config import (
    DEFAULT_PARENT,
    DEFAULT_ROLE_DIR,
    Config,
    ConfigError,
    default_identity,
    env_flag,
    validate_election,
    validate_election_parent,
    validate_port,
    validate_role_dir,
    validate_role_label,
    validate_session_timeout,
    validate_zk_auth,
    validate_zk_hosts,
)

PROG = "leader-sidecar"


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="ZooKeeper leader election sidecar")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="take part in the election until SIGTERM/SIGINT")
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

    status = sub.add_parser("status", help="print the queue of candidates, leader first")
    _common_zk(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--kubernetes", action="store_true",
        help="also list the group's pods with their role label (needs --namespace)",
    )
    status.add_argument("--namespace", help="namespace of the group's pods (env POD_NAMESPACE)")
    status.add_argument("--kubeconfig", help="kubeconfig outside a cluster (env KUBECONFIG)")

    leave = sub.add_parser(
        "leave", help="make the sidecar of this pod leave the election (its control socket)"
    )
    leave.add_argument("--role-dir", help="the running sidecar's role directory (env ROLE_DIR)")

    demo_parser = sub.add_parser(
        "demo", help="local showcase: ZooKeeper ensemble, five sidecars, failovers")
    _demo_arguments(demo_parser)
    demo_parser.add_argument(
        "--cluster", action="store_true",
        help="the user's flow on a local Kubernetes control plane with the chart installed "
             "by helm (builds the control-plane binaries on first use)",
    )

    app = sub.add_parser("demo-app", help="tiny HTTP application that shows the role")
    app.add_argument("--port", type=int, default=8080)
    app.add_argument("--role-dir", help="role files directory (env ROLE_DIR)")
    return parser


def _pick(value: Any, env: Mapping[str, str], name: str, default: Any = None) -> Any:
    """A flag wins over its environment variable, which wins over the default."""
    if value is not None:
        return value
    return env.get(name, default) if env.get(name, "") != "" else default


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    zk_hosts = validate_zk_hosts(_pick(args.zk_hosts, env, "ZK_HOSTS"))
    election = validate_election(_pick(args.election, env, "ELECTION_NAME"))
    timeout = validate_session_timeout(_pick(args.session_timeout, env, "ZK_SESSION_TIMEOUT", 6))
    identity = _pick(args.identity, env, "POD_NAME") or default_identity(env)
    http_port = validate_port(_pick(args.http_port, env, "HTTP_PORT", 8081), "HTTP port")
    elector_port = validate_port(_pick(args.elector_port, env, "ELECTOR_PORT", 0), "elector port")
    if elector_port and elector_port == http_port:
        raise ConfigError(f"elector port {elector_port} is the HTTP port too")
    role_dir = validate_role_dir(Path(_pick(args.role_dir, env, "ROLE_DIR", DEFAULT_ROLE_DIR)))
    return Config(
        zk_hosts=zk_hosts,
        election=election,
        identity=identity,
        namespace=_pick(args.namespace, env, "POD_NAMESPACE"),
        role_dir=role_dir,
        session_timeout=timeout,
        role_label=validate_role_label(_pick(args.role_label, env, "ROLE_LABEL", "role")),
        http_port=http_port,
        http_host=_pick(args.http_host, env, "HTTP_HOST", "0.0.0.0"),
        k8s_enabled=not (args.no_k8s or env_flag(env.get("K8S_DISABLED"))),
        zk_auth=validate_zk_auth(_pick(args.zk_auth, env, "ZK_AUTH")),
        election_parent=validate_election_parent(
            _pick(args.election_parent, env, "ELECTION_PARENT", DEFAULT_PARENT)
        ),
        kubeconfig=_pick(args.kubeconfig, env, "KUBECONFIG"),
        elector_port=elector_port,
    )


def _setup_logging(level: str | None) -> None:
    logging.basicConfig(
        level=(level or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kazoo").setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = build_config(args, env)
    _setup_logging(_pick(args.log_level, env, "LOG_LEVEL"))
    from .runner import Sidecar

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sidecar = Sidecar(config)
    try:
        sidecar.start()
    except ConfigError:
        sidecar.stop()
        raise
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
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, environment)
    except (ConfigError, UsageError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


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
