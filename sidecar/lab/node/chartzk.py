"""The chart's own ZooKeeper ensemble on the real node, read as its operator would: the
four-letter `srvr` command run inside each server's container (`kubectl exec`).

Guaranteed: `modes()` reports what each server answered at the moment it was asked;
a server that does not answer (restarting, no quorum) reports "none".
"""

from __future__ import annotations

import subprocess

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


def mode(release: ChartRelease, pod: str) -> str:
    out = exec_in(release, pod, "zookeeper", "bash", "-c",
                  "echo srvr | nc -w 2 127.0.0.1 2181", check=False).stdout
    found = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.startswith("Mode:")]
    return found[0] if found else "none"


def modes(release: ChartRelease) -> list[str]:
    return sorted(mode(release, pod) for pod in pods(release))


def leader(release: ChartRelease) -> str | None:
    """The server that says `Mode: leader`, if one does."""
    return next((pod for pod in pods(release) if mode(release, pod) == "leader"), None)
