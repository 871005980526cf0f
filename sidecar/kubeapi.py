"""The Kubernetes API as the sidecar needs it: six requests over the standard library.

Why not the `kubernetes` client: the sidecar sends a merge patch to its own pod, a JSON
patch whose `test` operations make it conditional (another pod's stale leader label,
the own pod's step-down annotation), posts Events (and patches the count of a repeated
one), reads its own pod (to tell a deletion from a watch that stopped matching) and (for
`status --kubernetes`, the label gate and to drop pods a relisted watch no longer
shows) lists its group's pods. Importing the client loads every
generated model class, about 30 MB resident in a process that otherwise needs 30;
kopf already brings aiohttp for its watch, and `http.client` is in every Python. This
module is the only place that speaks HTTP to the API server.

Where the credentials come from, in this order (as kubectl and client-go look):
1. `--kubeconfig`, else inside a pod the ServiceAccount (the token is read again before
   every request, because the kubelet rotates it), else `KUBECONFIG` or `~/.kube/config`
   (the first file of a list).
2. From a kubeconfig: the current context's cluster (`server`, `certificate-authority`
   or `-data`, `insecure-skip-tls-verify`, `tls-server-name`: the name the server's
   certificate is checked against, and sent as SNI, when `server` is another address,
   such as a proxy's) and user (`token`, `tokenFile`, read again
   before every request, `client-certificate`/`client-key` or their `-data`, or
   `username`/`password`). Exec and auth-provider plugins are not supported: a sidecar
   runs with a ServiceAccount.

Guaranteed: every request has a connect and a read timeout; the CA file
(`certificate-authority`, in a pod `ca.crt`) is read again before a new connection once it
changed (the kubelet rewrites the projected file when the cluster's CA rotates; a file
that does not load keeps the previous CA until it does); a failed request closes its
connection (the next one opens a fresh one); errors are `ApiError` (with the HTTP status)
or `OSError`/`http.client.HTTPException` for the transport. A kept-alive connection that
the server closed does not fail the next request: kube-apiserver closes a connection idle
for 90 s (and all of them when it restarts), so before a connection is used again it is
checked, and one found closed is replaced by a fresh one; if the close crosses the request
on the wire (the connection fails before any byte of the reply), the request is sent once
more, on a fresh connection.

Not guaranteed: any other retry (a timeout, a fresh connection that fails, a reply cut off
after it began, an error status: callers retry with their own backoff); that a request
sent once more did not reach the server the first time (a server that went down while
handling it): the sidecar's requests are safe to repeat (a merge patch writes the same
values again, the relabel's resourceVersion makes a repeat a 409, a GET or a list is
read-only, an Event may be posted twice, which Events allow anyway); thread safety of one
`KubeApi` across threads beyond a lock per request.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import os
import select
import socket
import ssl
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, parse_int, shown

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# How a connection the server closed fails a request written on it before any byte of a
# reply came back: RemoteDisconnected (a ConnectionResetError), a reset or a broken pipe,
# or TLS ending without its close_notify. A timeout is not among them: the request may be
# in the works, and only the caller's backoff may send it again.
CLOSED_BEFORE_REPLY = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class KubernetesConfigError(Exception):
    """No usable client configuration (no kubeconfig, not in a cluster, malformed file)."""


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}" + (f": {message}" if message else ""))
        self.status = status
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ApiConnection:
    """Where and how to reach the API, as plain data (kopf's login handler uses it too)."""

    server: str
    ca_path: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    certificate_path: str | None = None
    certificate_data: bytes | None = None
    private_key_path: str | None = None
    private_key_data: bytes | None = None
    tls_server_name: str | None = None

    def bearer_token(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip() or None
        return self.token


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (
        SERVICE_ACCOUNT_DIR / "token"
    ).exists()


def load_connection(kubeconfig: str | None) -> ApiConnection:
    """The connection for `kubeconfig` (see the module docstring for the order)."""
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        if not kubeconfig and in_cluster():
            return _from_service_account()
        return _from_kubeconfig(Path(os.path.expanduser(where.split(os.pathsep)[0])))
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise KubernetesConfigError(
            f"no Kubernetes client configuration (not in a cluster; kubeconfig {where}): "
            f"{detail}"
        ) from None


def _from_service_account() -> ApiConnection:
    """The kubelet's variables, checked: they end up in the URL of every request."""
    host = os.environ["KUBERNETES_SERVICE_HOST"].strip()
    if not host or any(char in host for char in "/@?#[] \t\n") or not host.isprintable():
        raise KubernetesConfigError(f"KUBERNETES_SERVICE_HOST {shown(host)} is no host")
    try:
        port = parse_int(os.environ.get("KUBERNETES_SERVICE_PORT") or "443", "API port", 1, 65535)
    except ConfigError as error:
        raise KubernetesConfigError(f"KUBERNETES_SERVICE_PORT: {error}") from None
    host = f"[{host}]" if ":" in host else host
    return ApiConnection(
        server=f"https://{host}:{port}",
        ca_path=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
        token_file=str(SERVICE_ACCOUNT_DIR / "token"),
    )


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            found = item.get(what) or {}
            if not isinstance(found, dict):
                raise ValueError(f"{what} {name!r} is not a mapping")
            return found
    raise KeyError(f"no {what} named {name!r}")


def _from_kubeconfig(path: Path) -> ApiConnection:
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise ValueError("not a kubeconfig")
    current = document.get("current-context")
    if not current:
        raise ValueError("no current-context")
    context = _named(document.get("contexts"), current, "context")
    cluster = _named(document.get("clusters"), context["cluster"], "cluster")
    user = _named(document.get("users"), context["user"], "user") if context.get("user") else {}
    base = path.parent

    def local(key: str, mapping: dict[str, Any]) -> str | None:
        value = mapping.get(key)
        return str(base / value) if value else None  # relative to the kubeconfig, as kubectl

    def data(key: str, mapping: dict[str, Any]) -> bytes | None:
        value = mapping.get(key)
        return base64.b64decode(value) if value else None

    if not cluster.get("server"):
        raise ValueError(f"cluster {context['cluster']!r} has no server")
    return ApiConnection(
        server=str(cluster["server"]).rstrip("/"),
        ca_path=local("certificate-authority", cluster),
        ca_data=data("certificate-authority-data", cluster),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token"),
        token_file=local("tokenFile", user),
        username=user.get("username"),
        password=user.get("password"),
        certificate_path=local("client-certificate", user),
        certificate_data=data("client-certificate-data", user),
        private_key_path=local("client-key", user),
        private_key_data=data("client-key-data", user),
        tls_server_name=cluster.get("tls-server-name") or None,
    )


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `host`, the certificate checked against `server_name` when one is given."""

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext | None,
                 server_name: str | None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._tls = context

    def connect(self) -> None:
        if self._server_name is None or self._tls is None:
            super().connect()
            return
        http.client.HTTPConnection.connect(self)  # TCP as http.client opens it (no delay)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


class KubeApi:
    """One keep-alive connection to the API server; `request()` from any thread."""

    def __init__(
        self, connection: ApiConnection, timeout: tuple[float, float] = (2.0, 5.0)
    ) -> None:
        self.connection = connection
        self.timeout = timeout
        url = urllib.parse.urlsplit(connection.server)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise KubernetesConfigError(f"bad API server address {connection.server!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._temporary: list[str] = []
        self._ca_stamp = self._ca_file_stamp()
        self._context = self._ssl_context() if self._https else None

    def _ca_file_stamp(self) -> tuple[int, int, int] | None:
        """What tells a rewritten CA file: the kubelet swaps a symlink (a new inode), an
        editor rewrites in place (a new mtime or size)."""
        if not self.connection.ca_path:
            return None
        try:
            stat = os.stat(self.connection.ca_path)
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _refresh_context(self) -> None:
        """Before a new connection: the CA again if its file changed since it was loaded."""
        stamp = self._ca_file_stamp()
        if not self._https or stamp is None or stamp == self._ca_stamp:
            return
        try:
            context = self._ssl_context()
        except (OSError, ssl.SSLError, ValueError):
            return  # half-written or broken: keep the CA we have, try again next time
        self._context, self._ca_stamp = context, stamp

    def _ssl_context(self) -> ssl.SSLContext:
        c = self.connection
        context = ssl.create_default_context(
            cafile=c.ca_path, cadata=c.ca_data.decode() if c.ca_data else None
        )
        if c.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        certificate = c.certificate_path or self._private_file(c.certificate_data)
        key = c.private_key_path or self._private_file(c.private_key_data)
        if certificate:
            context.load_cert_chain(certificate, key)
        return context

    def _private_file(self, content: bytes | None) -> str | None:
        # ssl loads client certificates from files only: a file of our own, mode 0600.
        if content is None:
            return None
        descriptor, name = tempfile.mkstemp(prefix="leader-sidecar-tls-")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        self._temporary.append(name)
        return name

    def close(self) -> None:
        with self._lock:
            self._drop()
            for name in self._temporary:
                with contextlib.suppress(OSError):
                    os.unlink(name)
            self._temporary.clear()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _reuse(self) -> bool:
        """True if a kept-alive connection is there and fit to carry the next request. An
        idle connection has nothing to read: if it has (the server's close_notify, FIN or
        reset), the server closed it, and it is dropped so that a fresh one is opened."""
        if self._conn is None:
            return False
        sock = self._conn.sock
        if sock is None or _readable(sock):
            self._drop()
            return False
        return True

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            connect, _read = self.timeout
            self._refresh_context()
            if self._https:
                self._conn = _HTTPSConnection(
                    self._host, self._port, timeout=connect, context=self._context,
                    server_name=self.connection.tls_server_name,
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=connect)
            self._conn.connect()
        if self._conn.sock is not None:
            self._conn.sock.settimeout(self.timeout[1])
        return self._conn

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "leader-sidecar"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.connection.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.connection.username is not None:
            pair = f"{self.connection.username}:{self.connection.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """JSON in, JSON out; `ApiError` for an error status."""
        payload = None if body is None else json.dumps(body).encode()
        target = self._prefix + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = self._headers(content_type or ("application/json" if payload else None))
        with self._lock:
            response = self._exchange(method, target, payload, headers)
            try:
                data = response.read()
            except BaseException:  # cut off after the reply began: not sent again
                self._drop()
                raise
            if response.will_close:
                self._drop()
        if response.status >= 400:
            raise ApiError(response.status, response.reason, _status_message(data))
        return json.loads(data) if data else None

    def _exchange(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        """Send the request and read the reply's status and headers; once more on a fresh
        connection if a kept-alive one turns out closed before any byte of the reply."""
        reused = self._reuse()
        try:
            return self._send(method, target, payload, headers)
        except CLOSED_BEFORE_REPLY:
            if not reused:
                raise
        # The server closed the connection as the request went out (`_send` dropped it).
        return self._send(method, target, payload, headers)

    def _send(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        try:
            conn = self._connection()
            conn.request(method, target, body=payload, headers=headers)
            return conn.getresponse()
        except BaseException:
            self._drop()
            raise

    # -- the requests of the sidecar -----------------------------------------------

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        return self.request(
            "PATCH", f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}", patch, MERGE_PATCH
        )

    def json_patch_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> Any:
        """A JSON patch (RFC 6902): its `test` operations make it conditional on the pod's
        current values, checked by the API server as it applies the patch."""
        return self.request(
            "PATCH", f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}", operations,
            JSON_PATCH,
        )

    def read_pod(self, namespace: str, name: str) -> Any:
        return self.request("GET", f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(name)}")

    def create_event(self, namespace: str, event: dict[str, Any]) -> Any:
        return self.request("POST", f"/api/v1/namespaces/{_q(namespace)}/events", event)

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        """A repeat of an Event already posted: its count and lastTimestamp."""
        return self.request(
            "PATCH", f"/api/v1/namespaces/{_q(namespace)}/events/{_q(name)}", patch,
            MERGE_PATCH,
        )

    def list_pods(self, namespace: str, label_selector: str) -> Any:
        return self.request(
            "GET", f"/api/v1/namespaces/{_q(namespace)}/pods",
            query={"labelSelector": label_selector},
        )


def _readable(sock: socket.socket) -> bool:
    """Something to read, or the peer gone, right now (urllib3 checks pooled connections
    the same way). For TLS, bytes already decrypted count too."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _status_message(data: bytes) -> str:
    """The `message` of a Kubernetes Status body, if that is what came back."""
    try:
        document = json.loads(data)
    except ValueError:
        return ""
    message = document.get("message", "") if isinstance(document, dict) else ""
    return str(message).splitlines()[0][:300] if message else ""
