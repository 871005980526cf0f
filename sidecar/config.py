"""Configuration of one sidecar: flags, their environment variables, and validation.

Every flag of DESIGN.md has an environment variable; a flag wins over its variable.
`build_config` checks everything that can be checked without touching the network, so
that bad input fails at start with one line (`ConfigError`) instead of later in a loop.
An unreachable ZooKeeper is deliberately *not* checked here: it is a runtime fault.

Timing invariants checked here (client-go style, next to the code that relies on them):
the session timeout lies in [1, 600] s. The server may negotiate it down to its own
[2*tickTime, 20*tickTime] window; the lease uses the negotiated value, not this one.

Hostile input (issue 11): every value is checked in full (`fullmatch`, ASCII only where
the consumer parses ASCII: kazoo, the Kubernetes API, ZooKeeper paths), and messages show
a value through `shown`, which keeps them on one line and short.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from .state import Record

# All patterns are used with `re.fullmatch` (a `$` also matches before a final newline),
# which compiles one at its first use: a sidecar's start compiles only those it needs.
ELECTION_NAME_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
HOST_PORT_PATTERN = r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:([0-9]{1,5}))?"
SCOPE_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
HOST_NAME_PATTERN = r"[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?"
CHROOT_PATTERN = r"(/[A-Za-z0-9_.-]+)+"
DNS_LABEL_PATTERN = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY_PATTERN = (
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
MIN_SESSION_TIMEOUT = 1.0
MAX_SESSION_TIMEOUT = 600.0
MAX_NAME = 253  # DNS subdomain, Kubernetes object names, host names
MAX_AUTH = 1024
DEFAULT_PARENT = "/leader-election"
DEFAULT_ROLE_DIR = Path("/var/run/election")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


class ConfigError(Exception):
    """Bad configuration: the CLI prints the message on one line and exits 2."""


class Config(Record):
    __slots__ = (
        "election",
        "election_parent",
        "elector_port",
        "http_host",
        "http_port",
        "identity",
        "k8s_enabled",
        "kubeconfig",
        "log_level",
        "namespace",
        "role_dir",
        "role_label",
        "session_timeout",
        "zk_auth",
        "zk_hosts",
        "zk_tls",
    )

    def __init__(
        self,
        zk_hosts: str,
        election: str,
        identity: str,
        namespace: str | None = None,
        role_dir: Path = DEFAULT_ROLE_DIR,
        session_timeout: float = 6.0,
        role_label: str = "role",
        http_port: int = 8081,
        http_host: str = "0.0.0.0",
        k8s_enabled: bool = True,
        zk_auth: str | None = None,
        election_parent: str = DEFAULT_PARENT,
        kubeconfig: str | None = None,
        elector_port: int = 0,
        log_level: str = "INFO",
        zk_tls: ZkTls | None = None,
    ) -> None:
        self.zk_hosts = zk_hosts
        self.zk_tls = zk_tls
        self.election = election
        self.identity = identity
        self.namespace = namespace
        self.role_dir = role_dir
        self.session_timeout = session_timeout
        self.role_label = role_label
        self.http_port = http_port
        self.http_host = http_host
        self.k8s_enabled = k8s_enabled
        self.zk_auth = zk_auth
        self.election_parent = election_parent
        self.kubeconfig = kubeconfig
        self.elector_port = elector_port
        self.log_level = log_level

    @property
    def election_path(self) -> str:
        return f"{self.election_parent.rstrip('/')}/{self.election}"

    @property
    def publishes_to_kubernetes(self) -> bool:
        return self.k8s_enabled and self.namespace is not None and bool(self.identity)


class ZkTls(Record):
    """TLS to ZooKeeper: the CA bundle the servers' certificates must chain to (their name
    must also match the connect string's host), and the client's own certificate and key,
    which a server with `ssl.clientAuth=need` asks for. Paths of PEM files."""

    __slots__ = ("ca", "cert", "key")

    def __init__(self, ca: str, cert: str | None = None, key: str | None = None) -> None:
        self.ca = ca
        self.cert = cert
        self.key = key


def shown(value: object, limit: int = 60) -> str:
    """`value` for an error message: its repr (escapes newlines, NUL, surrogates), cut."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def parse_bool(value: str | None, name: str) -> bool:
    """A boolean environment variable: 1/true/yes/on or 0/false/no/off (or empty)."""
    word = (value or "").strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{name} {shown(value)} is not a boolean: use true/false, 1/0, yes/no, on/off"
    )


def validate_path_text(value: str, what: str) -> str:
    """A path as the file system can take it: not empty, no NUL, encodable."""
    if value == "":
        raise ConfigError(f"{what} is empty")
    try:
        os.fsencode(value)
    except UnicodeError:
        raise ConfigError(f"{what} {shown(value)} is not encodable as a file name") from None
    if "\0" in value:
        raise ConfigError(f"{what} {shown(value)} contains a NUL character")
    return value


def default_identity(env: Mapping[str, str]) -> str:
    return env.get("POD_NAME") or socket.gethostname()


def _znode_path_ok(path: str) -> bool:
    """An absolute ZooKeeper path of plain names: no '.' or '..' (the server refuses them)."""
    return bool(re.fullmatch(CHROOT_PATTERN, path)) and not any(
        part in (".", "..") for part in path.split("/")
    )


def _host_ok(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return len(host) <= MAX_NAME and bool(re.fullmatch(HOST_NAME_PATTERN, host))


def validate_zk_hosts(zk_hosts: str | None) -> str:
    """host[:port][,host[:port]...][/chroot], as kazoo parses it (kazoo.hosts)."""
    if not zk_hosts or not zk_hosts.strip():
        raise ConfigError("missing ZooKeeper hosts: set --zk-hosts or ZK_HOSTS")
    hosts, slash, chroot = zk_hosts.strip().partition("/")
    if slash and not _znode_path_ok("/" + chroot):
        raise ConfigError(f"malformed ZooKeeper chroot in {shown(zk_hosts)}")
    for entry in hosts.split(","):
        match = re.fullmatch(HOST_PORT_PATTERN, entry.strip())
        if not match or not _host_ok(match.group(1)):
            raise ConfigError(
                f"malformed ZooKeeper connect string {shown(zk_hosts)}: bad entry {shown(entry)}"
            )
        port = match.group(3)
        if port is not None and not 0 < int(port) < 65536:
            raise ConfigError(
                f"malformed ZooKeeper connect string {shown(zk_hosts)}: bad port {port} "
                "(1-65535)"
            )
        try:  # what kazoo does with the entry; must not raise in the sidecar later
            urllib.parse.urlsplit("xxx://" + entry.strip()).port  # noqa: B018
        except ValueError:
            raise ConfigError(
                f"malformed ZooKeeper connect string {shown(zk_hosts)}: bad entry {shown(entry)}"
            ) from None
    return zk_hosts.strip()


def validate_election(name: str | None) -> str:
    if not name:
        raise ConfigError("missing election name: set --election or ELECTION_NAME")
    if len(name) > 63 or not re.fullmatch(ELECTION_NAME_PATTERN, name):
        raise ConfigError(
            f"bad election name {shown(name)}: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return name


def parse_number(
    value: str | float, what: str, low: float, high: float, unit: str = ""
) -> float:
    """A finite number in [low, high]; `what` names the flag or variable."""
    try:
        if isinstance(value, str) and (not value.isascii() or "_" in value):
            raise ValueError(value)  # float() takes '1_0' and other scripts' digits
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what} {shown(value)} is not a number{unit}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ConfigError(f"{what} {shown(value)} out of range [{low:g}, {high:g}]{unit}")
    return number


def parse_int(value: str | int, what: str, low: int, high: int) -> int:
    """A whole number in [low, high] (decimal digits only: no '1.5', '1e3' or '0x10')."""
    text = str(value).strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise ConfigError(f"{what} {shown(value)} is not a whole number in [{low}, {high}]")
    number = int(text) if len(digits) <= 20 else None  # int() of 4300+ digits raises
    if number is None or not low <= number <= high:
        raise ConfigError(f"{what} {shown(value)} out of range [{low}, {high}]")
    return number


def validate_session_timeout(value: str | float, what: str = "session timeout") -> float:
    return parse_number(
        value, what, MIN_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT, unit=" (seconds)"
    )


def validate_port(value: str | int, what: str) -> int:
    return parse_int(value, what, 0, 65535)


def validate_role_label(key: str) -> str:
    prefix, slash, _ = key.rpartition("/")
    if not re.fullmatch(LABEL_KEY_PATTERN, key) or (slash and len(prefix) > MAX_NAME):
        raise ConfigError(f"bad role label key {shown(key)}: not a valid Kubernetes label key")
    return key


def validate_zk_auth(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        raise ConfigError("bad ZooKeeper auth: expected user:password")
    # The value is a secret: never shown in a message.
    if len(value) > MAX_AUTH or any(not char.isprintable() for char in value):
        raise ConfigError(
            f"bad ZooKeeper auth: expected user:password of at most {MAX_AUTH} printable "
            "characters (a newline or other control character, e.g. at the end of a Secret?)"
        )
    return value


def validate_zk_tls(ca: str | None, cert: str | None, key: str | None) -> ZkTls | None:
    """TLS is on with a CA; a client certificate and its key come together. The files are
    loaded here, as the connection will load them, so that a bad file fails at start."""
    if not ca:
        if cert or key:
            raise ConfigError("--zk-tls-cert/--zk-tls-key need --zk-tls-ca (ZK_TLS_CA): the CA "
                              "that verifies the servers")
        return None
    if bool(cert) != bool(key):
        raise ConfigError("--zk-tls-cert (ZK_TLS_CERT) and --zk-tls-key (ZK_TLS_KEY) go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    what = f"ZooKeeper CA {shown(ca)}"
    try:
        context.load_verify_locations(cafile=ca)
        if cert and key:
            what = f"ZooKeeper client certificate {shown(cert)} with key {shown(key)}"
            context.load_cert_chain(cert, key)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ConfigError(f"cannot load the {what}: {reason}") from None
    return ZkTls(ca, cert or None, key or None)


def validate_log_level(value: str | None) -> str:
    level = (value or "INFO").strip().upper()
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        raise ConfigError(f"bad log level {shown(value)}: use one of {', '.join(LOG_LEVELS)}")
    return level


def validate_identity(identity: str, for_kubernetes: bool) -> str:
    """The candidate's name; the pod's name (a DNS subdomain) when it labels the pod."""
    if not identity or len(identity) > MAX_NAME or any(
        not char.isprintable() or char.isspace() or char == "/" for char in identity
    ):
        raise ConfigError(
            f"bad identity {shown(identity)}: 1-{MAX_NAME} printable characters, "
            "no spaces or '/'"
        )
    if for_kubernetes and not re.fullmatch(DNS_SUBDOMAIN_PATTERN, identity):
        raise ConfigError(
            f"bad identity {shown(identity)}: the pod's name (POD_NAME) must be a DNS "
            "subdomain (lower-case letters, digits, '-' and '.')"
        )
    return identity


def validate_namespace(namespace: str | None) -> str | None:
    """A Kubernetes namespace (DNS label); empty means none."""
    if not namespace:
        return None
    if not re.fullmatch(DNS_LABEL_PATTERN, namespace):
        raise ConfigError(
            f"bad namespace {shown(namespace)}: a DNS label (lower-case letters, digits and "
            "'-', at most 63 characters)"
        )
    return namespace


def validate_http_host(host: str) -> str:
    """An address to bind: an IPv4/IPv6 address or a host name."""
    try:
        ipaddress.ip_address(host)
        _, percent, scope = host.partition("%")
        valid = not percent or bool(re.fullmatch(SCOPE_PATTERN, scope))  # fe80::1%eth0
    except ValueError:
        named = bool(re.fullmatch(HOST_NAME_PATTERN, host))
        valid = ":" not in host and len(host) <= MAX_NAME and named
    if not valid:
        raise ConfigError(
            f"bad HTTP host {shown(host)}: an IP address (0.0.0.0, ::) or a host name"
        )
    return host


def validate_kubeconfig(value: str | None) -> str | None:
    if not value:
        return None
    return validate_path_text(value, "kubeconfig")


def validate_role_dir(path: Path) -> Path:
    """The role directory must exist or be creatable, and be writable."""
    validate_path_text(str(path), "role directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"role directory {shown(str(path), 200)} cannot be created: {error.strerror}"
        ) from None
    if not path.is_dir():
        raise ConfigError(f"role directory {shown(str(path), 200)} is not a directory")
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"role directory {shown(str(path), 200)} is not writable: {error.strerror}"
        ) from None
    return path


def validate_election_parent(path: str) -> str:
    if not _znode_path_ok(path) or path == "/zookeeper" or path.startswith("/zookeeper/"):
        raise ConfigError(
            f"bad election parent path {shown(path)}: an absolute ZooKeeper path of names "
            "made of letters, digits, '_', '.' and '-' (not '.', '..' or /zookeeper)"
        )
    return path
