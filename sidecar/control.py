"""The control socket: the only way to make a running sidecar leave or rejoin the election.

`POST /leave` and `POST /rejoin` are served on a Unix socket in the role directory
(`<role dir>/control.sock`, mode 0600), never on a TCP port. Only a process that shares the
pod's role volume and the sidecar's user can connect: the sidecar container itself, where
the chart's preStop hook runs `leader-sidecar leave`, or whoever may `kubectl exec` into
it. No request from the network reaches it, whatever the NetworkPolicies, the CNI or a
service mesh do; the TCP port answers these paths with 403.

Guaranteed: the routes change nothing for any method but POST (405). Not guaranteed:
protection from a process that runs as the sidecar's user inside the pod (it owns the
pod's election anyway).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

SOCKET_NAME = "control.sock"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
CONTROL_ROUTES = ("/leave", "/rejoin")


class ControlSocketError(Exception):
    """The control socket cannot be made or reached."""


def socket_path(role_dir: Path) -> Path:
    return role_dir / SOCKET_NAME


@contextlib.contextmanager
def _addressable(path: Path) -> Iterator[str]:
    """`path` as an address for bind/connect: sun_path holds 107 bytes, so a longer one is
    reached through a descriptor of its directory (/proc/self/fd/N/name, Linux)."""
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        yield str(path)
        return
    try:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise ControlSocketError(f"cannot open {str(path.parent)!r}: {error.strerror}") from None
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def bind(role_dir: Path) -> socket.socket:
    """A listening Unix socket only this user may connect to (a stale one is replaced)."""
    path = socket_path(role_dir)
    with _addressable(path) as address:
        return _bind(path, address)


def _bind(path: Path, address: str) -> socket.socket:
    if _answers(address):
        raise ControlSocketError(
            f"another sidecar is running with the role directory {str(path.parent)!r}"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a container that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)  # created 0600: no window in which others may connect
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise ControlSocketError(
            f"cannot create the control socket {str(path)!r}: {error.strerror}"
        ) from None
    finally:
        os.umask(old_mask)
    listener.listen(8)
    return listener


def _answers(address: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


MAX_REPLY = 65536


def request(role_dir: Path, route: str, timeout: float = 5.0) -> int:
    """POST `route` on the control socket; the HTTP status code."""
    path = socket_path(role_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client, _addressable(
            path
        ) as address:
            client.settimeout(timeout)
            client.connect(address)
            client.sendall(
                f"POST {route} HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".encode()
            )
            # Read the whole reply (HTTP/1.0: the server closes): hanging up after the
            # status line breaks the server's write of the body.
            reply = b""
            while len(reply) < MAX_REPLY:
                chunk = client.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError as error:
        reason = error.strerror or str(error)
        raise ControlSocketError(f"cannot reach the sidecar at {str(path)!r}: {reason}") from None
    status_line = reply.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ControlSocketError(f"no HTTP answer on {str(path)!r}")
    return int(status_line[1])
