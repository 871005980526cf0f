"""The chart's own ZooKeeper ensemble on the real node, read as its operator would: the
four-letter `srvr` command run inside each server's container (`kubectl exec`, through the
chart's `zk-4lw`, which speaks TLS to the TLS-only client port).

Guaranteed: `modes()` reports what each server answered at the moment it was asked;
a server that does not answer (restarting, no quorum) reports "none".
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from sidecar.lab.cluster.release import ChartRelease

QUORUM = ["follower", "follower", "leader"]


def exec_in(release: ChartRelease, pod: str, container: str, *command: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl exec` into one container of one of the release's pods."""
    result = subprocess.run(
        [release.cluster.tool("kubectl"), "--kubeconfig", str(release.cluster.kubeconfig),
         "-n", release.namespace, "exec", pod, "-c", container, "--", *command],
        capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"exec {pod}/{container} {command}: {result.stderr.strip()}")
    return result


def selector(release: ChartRelease) -> str:
    return (f"app.kubernetes.io/instance={release.name},"
            "app.kubernetes.io/component=zookeeper")


def pods(release: ChartRelease) -> list[str]:
    items = release.get_json("pods", "-l", selector(release))["items"]
    return sorted(p["metadata"]["name"] for p in items)


# The chart's four-letter-word client in every server's container (the scripts ConfigMap):
# over TLS with the server's own certificate when the client port is TLS only (the
# default), through nc on the plain port otherwise.
ZK_4LW = "/opt/leader-election/bin/zk-4lw"


def mode(release: ChartRelease, pod: str) -> str:
    out = exec_in(release, pod, "zookeeper", ZK_4LW, "srvr", check=False).stdout
    found = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.startswith("Mode:")]
    return found[0] if found else "none"


def client_tls_files(release: ChartRelease, directory: Path) -> tuple[Path, Path, Path]:
    """The sidecars' CA, client certificate and key (the Secret their pods mount), written
    to `directory` (mode 0600) for a client on the host: (ca, cert, key)."""
    app = release.get_json("statefulset", release.name)
    volumes = app["spec"]["template"]["spec"]["volumes"]
    (secret_name,) = [v["secret"]["secretName"] for v in volumes if v["name"] == "zk-tls"]
    data = release.get_json("secret", secret_name)["data"]
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in ("ca.crt", "tls.crt", "tls.key"):
        path = directory / key
        path.touch(mode=0o600)
        path.write_bytes(base64.b64decode(data[key]))
        paths.append(path)
    return paths[0], paths[1], paths[2]


def modes(release: ChartRelease) -> list[str]:
    return sorted(mode(release, pod) for pod in pods(release))


def leader(release: ChartRelease) -> str | None:
    """The server that says `Mode: leader`, if one does."""
    return next((pod for pod in pods(release) if mode(release, pod) == "leader"), None)
