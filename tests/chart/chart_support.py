"""Shared constants and helpers of the deployment tests (fixtures are in conftest.py).

A module of its own, with a unique name, because `conftest` is not importable by name when
several test directories have one.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sidecar.lab.cluster import binaries

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "leader-election"
RELEASE = "demo"
NAMESPACE = "leader-election"

# The Kubernetes versions the chart supports, as kubernetes-validate ships their schemas:
# native sidecars need 1.29; the plain-container fallback goes back to 1.25, the oldest
# release kubernetes-validate has; 1.37 is the newest it has.
OLDEST_NATIVE = "1.29.0"
OLDEST_PLAIN = "1.25.0"
NEWEST = "1.37.0"

# Values combinations every structural test runs against (name -> values).
COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "app-1": {"app": {"replicas": 1}},
    "app-5": {"app": {"replicas": 5}},
    "zookeeper-1": {"zookeeper": {"replicas": 1}},
    "zookeeper-5": {"zookeeper": {"replicas": 5}},
    "plain-sidecar": {"sidecar": {"native": False}},
    "no-persistence": {"zookeeper": {"persistence": {"enabled": False}}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
    "auth": {"zkAuth": {"enabled": True, "credentials": "sidecar:s3cret"}},
    "auth-off": {"zkAuth": {"enabled": False}},
    "auth-existing-secret": {"zkAuth": {"enabled": True, "existingSecret": "my-zk-creds"}},
    "external-ensemble": {
        "zookeeper": {"enabled": False},
        "externalZookeeper": {"hosts": "zk-a.example:2181,zk-b.example:2181/apps"},
    },
    "hard-anti-affinity": {"zookeeper": {"antiAffinity": "hard"}},
    "tls-off": {"zookeeper": {"tls": {"enabled": False}}},
    "tls-existing-secrets": {"zookeeper": {"tls": {"existingSecret": "zk-server-tls",
                                                   "existingClientSecret": "zk-client-tls"}}},
    "external-ensemble-tls": {
        "zookeeper": {"enabled": False},
        "externalZookeeper": {"hosts": "zk-a.example:2281/apps",
                              "tls": {"enabled": True, "existingSecret": "ext-zk-tls"}},
    },
    "custom-app": {"app": {"image": {"repository": "registry.example/shop", "tag": "1.2.3"}}},
    "everything-off": {
        "sidecar": {"native": False},
        "app": {"pdb": {"enabled": False}, "preStopLeave": False},
        "zkAuth": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "zookeeper": {"persistence": {"enabled": False}, "pdb": {"enabled": False}},
        "tests": {"enabled": False},
    },
}


@dataclass(frozen=True)
class Manifests:
    """The objects one render produced."""

    values: dict[str, Any]
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        names = [o["metadata"]["name"] for o in self.of_kind(kind)]
        raise AssertionError(f"no {kind} named {name}; there are {names}")

    def has(self, kind: str, name: str) -> bool:
        return any(o["metadata"]["name"] == name for o in self.of_kind(kind))

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """Every pod spec: StatefulSet templates and the test Pods, by object name."""
        specs = [(o["metadata"]["name"], o["spec"]) for o in self.of_kind("Pod")]
        for sts in self.of_kind("StatefulSet"):
            specs.append((sts["metadata"]["name"], sts["spec"]["template"]["spec"]))
        return specs

    @property
    def app(self) -> dict[str, Any]:
        return self.get("StatefulSet", RELEASE)

    @property
    def app_pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.app["spec"]["template"]["spec"]
        return spec

    def container(self, name: str) -> dict[str, Any]:
        """A container of the application pod, wherever it is (init or regular)."""
        pod = self.app_pod
        for container in pod.get("initContainers", []) + pod["containers"]:
            if container["name"] == name:
                return dict(container)
        raise AssertionError(f"no container {name} in the application pod")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or the valueFrom dict) of a container's environment."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def parse_manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        objects.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return objects


class HelmError(Exception):
    """The real `helm` binary refused; the message is what it printed on stderr."""


def helm(*args: str, values: dict[str, Any] | None = None) -> str:
    """Run the `helm` built with the local control plane (tools/cluster) and return stdout."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
        json.dump(values or {}, values_file)  # JSON is YAML: helm takes it with -f
        values_file.flush()
        result = subprocess.run(
            [str(binaries.ensure_built() / "helm"), *args, "-f", values_file.name],
            capture_output=True, text=True, timeout=120, check=False,
        )
    if result.returncode != 0:
        raise HelmError("\n".join(part for part in (result.stdout.strip(),
                                                     result.stderr.strip()) if part))
    return result.stdout


_SOURCE = re.compile(r"^# Source: (\S+)\s*$", re.MULTILINE)


def split_sources(stream: str) -> dict[str, str]:
    """`helm template` output, split by its `# Source: <path>` comments into path -> text."""
    rendered: dict[str, str] = {}
    for document in stream.split("\n---"):
        found = _SOURCE.search(document)
        if found:
            rendered[found[1]] = rendered.get(found[1], "") + "\n---\n" + document
    return rendered


# Credentials and a TLS Secret for the renders without a cluster: the chart refuses to
# generate them where it cannot read the cluster (test_chart_lifecycle.py), as Argo CD and
# Flux users do. The generated certificates are checked on the local control plane.
OFFLINE_CREDENTIALS = "leader-sidecar:offline-render-credentials"
OFFLINE_TLS_SECRET = "offline-zookeeper-tls"


def with_offline_credentials(values: dict[str, Any]) -> dict[str, Any]:
    """`values` plus zkAuth.credentials and zookeeper.tls.existingSecret where the chart
    would otherwise generate them."""
    zk_auth = values.get("zkAuth", {})
    if not (zk_auth.get("enabled", True) is False or zk_auth.get("credentials")
            or zk_auth.get("existingSecret")):
        values = {**values, "zkAuth": {**zk_auth, "credentials": OFFLINE_CREDENTIALS}}
    return with_offline_tls(values)


def with_offline_tls(values: dict[str, Any]) -> dict[str, Any]:
    """`values` plus zookeeper.tls.existingSecret where the chart would otherwise generate
    the ensemble's certificates."""
    zookeeper = values.get("zookeeper", {})
    tls = zookeeper.get("tls", {})
    if (not zookeeper.get("enabled", True) or not tls.get("enabled", True)
            or tls.get("existingSecret")):
        return values
    return {**values, "zookeeper": {**zookeeper,
                                    "tls": {**tls, "existingSecret": OFFLINE_TLS_SECRET}}}


def render_for_cluster(values: dict[str, Any], kube_version: str) -> dict[str, str]:
    """`helm template` (tests included) for a cluster of `kube_version`, plus NOTES.txt
    from `helm install --dry-run=client`, as path -> rendered text (with
    OFFLINE_CREDENTIALS where the values give none)."""
    values = with_offline_credentials(values)
    version = f"v{kube_version.lstrip('v')}"
    common = (RELEASE, str(CHART_DIR), "--namespace", NAMESPACE)
    rendered = split_sources(helm("template", *common, "--kube-version", version, values=values))
    # `helm install` has no --kube-version: it renders NOTES for helm's own default cluster.
    dry_run = helm("install", *common, "--dry-run=client", values=values)
    if "NOTES:" in dry_run:
        rendered["leader-election/templates/NOTES.txt"] = dry_run.split("NOTES:", 1)[1]
    return rendered


def lint(values: dict[str, Any], kube_version: str | None = None) -> tuple[bool, str]:
    """`helm lint --strict` (with OFFLINE_CREDENTIALS where the values give none):
    (passed, everything it printed)."""
    values = with_offline_credentials(values)
    args = ["lint", str(CHART_DIR), "--strict", "--namespace", NAMESPACE]
    if kube_version:
        args += ["--kube-version", f"v{kube_version.lstrip('v')}"]
    try:
        return True, helm(*args, values=values)
    except HelmError as error:
        return False, str(error)
