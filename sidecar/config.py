"""Configuration of one sidecar: flags, their environment variables, and validation.

Every flag of DESIGN.md has an environment variable; a flag wins over its variable.
`build_config` checks everything that can be checked without touching the network, so
that bad input fails at start with one line (`ConfigError`) instead of later in a loop.
An unreachable ZooKeeper is deliberately *not* checked here: it is a runtime fault.

Timing invariants checked here (client-go style, next to the code that relies on them):
the session timeout lies in [1, 600] s. The server may negotiate it down to its own
[2*tickTime, 20*tickTime] window; the lease uses the negotiated value, not this one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

ELECTION_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HOST_PORT_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:(\d{1,5}))?$")
CHROOT_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
MIN_SESSION_TIMEOUT = 1.0
MAX_SESSION_TIMEOUT = 600.0
DEFAULT_PARENT = "/leader-election"
DEFAULT_ROLE_DIR = Path("/var/run/election")


class ConfigError(Exception):
    """Bad configuration: the CLI prints the message on one line and exits 2."""


@dataclasses.dataclass(frozen=True)
class Config:
    zk_hosts: str
    election: str
    identity: str
    namespace: str | None = None
    role_dir: Path = DEFAULT_ROLE_DIR
    session_timeout: float = 6.0
    role_label: str = "role"
    http_port: int = 8081
    http_host: str = "0.0.0.0"
    k8s_enabled: bool = True
    zk_auth: str | None = None
    election_parent: str = DEFAULT_PARENT
    kubeconfig: str | None = None
    elector_port: int = 0

    @property
    def election_path(self) -> str:
        return f"{self.election_parent.rstrip('/')}/{self.election}"

    @property
    def publishes_to_kubernetes(self) -> bool:
        return self.k8s_enabled and self.namespace is not None and bool(self.identity)


def env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def default_identity(env: Mapping[str, str]) -> str:
    return env.get("POD_NAME") or socket.gethostname()


def validate_zk_hosts(zk_hosts: str | None) -> str:
    if not zk_hosts or not zk_hosts.strip():
        raise ConfigError("missing ZooKeeper hosts: set --zk-hosts or ZK_HOSTS")
    hosts, slash, chroot = zk_hosts.strip().partition("/")
    if slash and not CHROOT_RE.match("/" + chroot):
        raise ConfigError(f"malformed ZooKeeper chroot in {zk_hosts!r}")
    for entry in hosts.split(","):
        match = HOST_PORT_RE.match(entry.strip())
        if not match:
            raise ConfigError(
                f"malformed ZooKeeper connect string {zk_hosts!r}: bad entry {entry!r}"
            )
        port = match.group(3)
        if port is not None and not 0 < int(port) < 65536:
            raise ConfigError(f"malformed ZooKeeper connect string {zk_hosts!r}: bad port {port}")
    return zk_hosts.strip()


def validate_election(name: str | None) -> str:
    if not name:
        raise ConfigError("missing election name: set --election or ELECTION_NAME")
    if len(name) > 63 or not ELECTION_NAME_RE.match(name):
        raise ConfigError(
            f"bad election name {name!r}: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return name


def validate_session_timeout(value: str | float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"session timeout {value!r} is not a number of seconds") from None
    if not MIN_SESSION_TIMEOUT <= seconds <= MAX_SESSION_TIMEOUT:
        raise ConfigError(
            f"session timeout {seconds:g}s out of range "
            f"[{MIN_SESSION_TIMEOUT:g}, {MAX_SESSION_TIMEOUT:g}]"
        )
    return seconds


def validate_port(value: str | int, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {value!r} is not a port number") from None
    if not 0 <= port < 65536:
        raise ConfigError(f"{what} {port} out of range [0, 65535]")
    return port


def validate_role_label(key: str) -> str:
    if not LABEL_KEY_RE.match(key):
        raise ConfigError(f"bad role label key {key!r}: not a valid Kubernetes label key")
    return key


def validate_zk_auth(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        raise ConfigError("bad ZooKeeper auth: expected user:password")
    return value


def validate_role_dir(path: Path) -> Path:
    """The role directory must exist or be creatable, and be writable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"role directory {str(path)!r} cannot be created: {error.strerror}"
        ) from None
    if not path.is_dir():
        raise ConfigError(f"role directory {str(path)!r} is not a directory")
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"role directory {str(path)!r} is not writable: {error.strerror}"
        ) from None
    return path


def validate_election_parent(path: str) -> str:
    if not CHROOT_RE.match(path):
        raise ConfigError(f"bad election parent path {path!r}")
    return path
