"""What operators do to a release over its life (issue 24, items 4 and 7): render it
without a cluster (`helm template`, Argo CD, Flux), uninstall and install it again over the
ZooKeeper volumes that stay, and change the size of the ensemble on a live release.

The renders use the real `helm` offline; the release tests use the real local control
plane (fixture `cluster`): `helm install` without `--wait`, since only the objects the API
server keeps matter here, not running pods.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from chart_support import CHART_DIR, RELEASE, HelmError, helm, with_offline_tls
from cryptography import x509

from sidecar.lab.cluster.control_plane import LocalCluster

NO_CLUSTER_MESSAGE = "zkAuth.credentials or zkAuth.existingSecret"
NO_CLUSTER_TLS_MESSAGE = "zookeeper.tls.existingSecret"
GIVEN = "sidecar:s3cret"


def template(values: dict[str, Any], *, offline_tls: bool = True) -> str:
    """`helm template` without a cluster; with `offline_tls`, an existing TLS Secret named
    where the chart would otherwise refuse to generate the ensemble's certificates."""
    return helm("template", RELEASE, str(CHART_DIR), "--namespace", "leader-election",
                values=with_offline_tls(values) if offline_tls else values)


def objects(stream: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(stream) if doc]


def app_annotations(stream: str) -> dict[str, str]:
    (app,) = [o for o in objects(stream)
              if o["kind"] == "StatefulSet" and o["metadata"]["name"] == RELEASE]
    annotations: dict[str, str] = app["spec"]["template"]["metadata"]["annotations"]
    return annotations


# --- item 4: renders without a cluster --------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2])
def test_render_without_a_cluster_and_without_credentials_fails_clearly(attempt: int) -> None:
    # Each render used to generate a new password (and the pods did not roll): sidecars
    # with another password than the election's znodes get NoAuth, the group stays unknown.
    # The certificates likewise: a new CA on each render, and the running servers' no
    # longer verify. One message names everything to set, whichever template asked first.
    with pytest.raises(HelmError) as raised:
        template({}, offline_tls=False)
    message = str(raised.value)
    assert NO_CLUSTER_MESSAGE in message and "helm template" in message, message
    assert NO_CLUSTER_TLS_MESSAGE in message, message
    assert message.count("execution error") == 1, message


@pytest.mark.parametrize(
    ("values", "names", "omits"),
    [({"zkAuth": {"credentials": GIVEN}}, NO_CLUSTER_TLS_MESSAGE, NO_CLUSTER_MESSAGE),
     ({"zookeeper": {"tls": {"existingSecret": "zk-tls"}}}, NO_CLUSTER_MESSAGE,
      NO_CLUSTER_TLS_MESSAGE)],
    ids=["certificates-missing", "credentials-missing"],
)
def test_render_without_a_cluster_names_only_what_is_missing(
    values: dict[str, Any], names: str, omits: str,
) -> None:
    with pytest.raises(HelmError) as raised:
        template(values, offline_tls=False)
    message = str(raised.value)
    assert names in message and omits not in message, message


@pytest.mark.parametrize(
    "values",
    [{"zookeeper": {"tls": {"enabled": False}}}, {"zookeeper": {"enabled": False},
                                                  "externalZookeeper": {"hosts": "zk:2181"}}],
    ids=["tls-off", "external-ensemble"],
)
def test_render_without_a_cluster_needs_no_tls_secret_where_nothing_is_generated(
    values: dict[str, Any],
) -> None:
    stream = template({**values, "zkAuth": {"credentials": GIVEN}}, offline_tls=False)
    assert not [o for o in objects(stream) if o["kind"] == "Secret"
                and o["type"] == "kubernetes.io/tls"]


@pytest.mark.parametrize(
    "zk_auth",
    [{"credentials": GIVEN}, {"existingSecret": "my-zk-creds"}, {"enabled": False}],
    ids=["credentials", "existing-secret", "auth-off"],
)
def test_render_without_a_cluster_with_credentials_is_identical_each_time(
    zk_auth: dict[str, Any],
) -> None:
    first, second = (template({"zkAuth": zk_auth}) for _ in range(2))
    assert first == second


def test_pods_roll_when_the_credentials_change() -> None:
    # The checksum hashes the credentials themselves, not an empty value.
    one = app_annotations(template({"zkAuth": {"credentials": GIVEN}}))["checksum/zk-auth"]
    other = app_annotations(template({"zkAuth": {"credentials": "sidecar:other"}}))
    assert one != other["checksum/zk-auth"]
    assert one != hashlib.sha256(b"").hexdigest()
    existing = app_annotations(template({"zkAuth": {"existingSecret": "my-zk-creds"}}))
    assert "checksum/zk-auth" in existing


def test_created_secret_is_kept_across_uninstall() -> None:
    stream = template({"zkAuth": {"credentials": GIVEN}})
    (secret,) = [o for o in objects(stream) if o["kind"] == "Secret"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# --- on the local control plane -----------------------------------------------------------


class Release:
    """One release of the chart in a namespace of its own, driven by the real helm."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.namespace = f"life-{uuid.uuid4().hex[:8]}"
        self.name = "life"

    def helm(self, *args: str, values: dict[str, Any] | None = None) -> str:
        command = [self.cluster.tool("helm"), "--kubeconfig", str(self.cluster.kubeconfig),
                   "--namespace", self.namespace, *args]
        with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
            if values is not None:  # `helm uninstall` takes no values
                json.dump(values, values_file)
                values_file.flush()
                command += ["-f", values_file.name]
            result = subprocess.run(command, capture_output=True, text=True, timeout=180,
                                    check=False)
        if result.returncode != 0:
            raise HelmError(result.stderr.strip())
        return result.stdout

    def install(self, values: dict[str, Any] | None = None) -> str:
        return self.helm("install", self.name, str(CHART_DIR), values=values or {})

    def secret(self) -> dict[str, Any] | None:
        out = self.cluster.kubectl("--namespace", self.namespace, "get", "secret",
                                   f"{self.name}-zk-auth", "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def checksum(self) -> str:
        sts = json.loads(self.cluster.kubectl("--namespace", self.namespace, "get",
                                              "statefulset", self.name, "-o", "json"))
        annotations: dict[str, str] = sts["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/zk-auth"]

    def tls_data(self) -> dict[str, dict[str, str]]:
        """The data of the chart's generated TLS Secrets (server, client) by name."""
        found = {}
        for suffix in ("zookeeper-tls", "zookeeper-client-tls"):
            out = self.cluster.kubectl("--namespace", self.namespace, "get", "secret",
                                       f"{self.name}-{suffix}", "-o", "json")
            secret = json.loads(out)
            assert secret["type"] == "kubernetes.io/tls"
            assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            found[suffix] = secret["data"]
        return found

    def tls_checksums(self) -> tuple[str, str]:
        """checksum/zk-tls of the ensemble's and of the application's pod template."""
        sums = []
        for sts in (f"{self.name}-zookeeper", self.name):
            obj = json.loads(self.cluster.kubectl("--namespace", self.namespace, "get",
                                                  "statefulset", sts, "-o", "json"))
            sums.append(obj["spec"]["template"]["metadata"]["annotations"]["checksum/zk-tls"])
        return sums[0], sums[1]

    def password(self) -> str:
        secret = self.secret()
        assert secret is not None, "no credentials Secret"
        return base64.b64decode(secret["data"]["credentials"]).decode()


@pytest.fixture
def release(cluster: LocalCluster) -> Iterator[Release]:
    created = Release(cluster)
    cluster.kubectl("create", "namespace", created.namespace)
    try:
        yield created
    finally:
        cluster.kubectl("delete", "namespace", created.namespace, "--wait=false",
                        "--ignore-not-found", check=False)


def test_reinstall_over_kept_volumes_keeps_the_password(release: Release) -> None:
    release.install()
    password = release.password()
    user, _, secret = password.partition(":")
    assert user == "leader-sidecar" and len(secret) == 40
    # The pods roll when the credentials change: the checksum is the password's own.
    assert release.checksum() == hashlib.sha256(password.encode()).hexdigest()
    release.helm("upgrade", release.name, str(CHART_DIR), values={})
    assert release.password() == password, "an upgrade changed the password"
    # The password is resolved during the render only: it never lands in the values.
    assert password not in release.helm("get", "values", release.name, "--all")
    release.helm("uninstall", release.name)
    # The ZooKeeper PVCs stay after an uninstall, and so do the election's znodes with the
    # first password's ACL: the Secret must stay too.
    assert release.secret() is not None, "helm uninstall deleted the credentials Secret"
    release.install()
    assert release.password() == password, "the reinstall generated another password"


def certificate(data: dict[str, str], key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(data[key]))


def test_generated_certificates_are_kept_and_rotated_by_deleting_them(
    release: Release,
) -> None:
    release.install()
    tls = release.tls_data()
    server, client = tls["zookeeper-tls"], tls["zookeeper-client-tls"]
    assert server["ca.crt"] == client["ca.crt"]
    ca = certificate(server, "ca.crt")
    for data in (server, client):
        certificate(data, "tls.crt").verify_directly_issued_by(ca)
        # PKCS#1 as sprig writes it: the servers convert theirs when they start.
        assert base64.b64decode(data["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY")
    sans = certificate(server, "tls.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    domain = f"{release.namespace}.svc.cluster.local"
    assert f"{release.name}-zookeeper.{domain}" in sans.get_values_for_type(x509.DNSName)
    assert f"{release.name}-zookeeper-2.{release.name}-zookeeper-headless.{domain}" in (
        sans.get_values_for_type(x509.DNSName))
    # Its own Service, the name its peers dial and check.
    assert f"{release.name}-zookeeper-2.{domain}" in sans.get_values_for_type(x509.DNSName)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    checksums = release.tls_checksums()
    # Kept across upgrades: the same CA and certificates, no roll.
    release.helm("upgrade", release.name, str(CHART_DIR), values={"app": {"replicas": 2}})
    assert release.tls_data() == tls, "an upgrade changed the certificates"
    assert release.tls_checksums() == checksums
    # ... and across an uninstall and a reinstall (the Secrets stay, like the PVCs).
    release.helm("uninstall", release.name)
    assert release.tls_data() == tls, "helm uninstall deleted the certificates"
    release.install()
    assert release.tls_data() == tls, "the reinstall generated other certificates"
    # Rotation (docs/deployment.md): delete the Secrets, upgrade: a new CA and both
    # certificates, and both StatefulSets roll.
    release.cluster.kubectl("--namespace", release.namespace, "delete", "secret",
                            f"{release.name}-zookeeper-tls", f"{release.name}-zookeeper-client-tls")
    release.helm("upgrade", release.name, str(CHART_DIR), values={})
    rotated = release.tls_data()
    assert rotated["zookeeper-tls"]["ca.crt"] != server["ca.crt"]
    assert rotated["zookeeper-tls"]["ca.crt"] == rotated["zookeeper-client-tls"]["ca.crt"]
    new = release.tls_checksums()
    assert new[0] != checksums[0] and new[1] != checksums[1]


def test_zookeeper_replicas_cannot_change_on_a_live_release(release: Release) -> None:
    release.install()
    with pytest.raises(HelmError) as raised:
        release.helm("upgrade", release.name, str(CHART_DIR),
                     values={"zookeeper": {"replicas": 5}})
    message = str(raised.value)
    assert "zookeeper.replicas" in message and "docs/deployment.md" in message, message
    sts = json.loads(release.cluster.kubectl(
        "--namespace", release.namespace, "get", "statefulset", f"{release.name}-zookeeper",
        "-o", "json"))
    assert sts["spec"]["replicas"] == 3
    # Any other upgrade goes through, and so does a render without a cluster.
    release.helm("upgrade", release.name, str(CHART_DIR), values={"app": {"replicas": 2}})
    assert template({"zkAuth": {"credentials": GIVEN}, "zookeeper": {"replicas": 5}})
    # The documented procedure (docs/deployment.md): the ensemble rebuilt from scratch.
    kubectl = release.cluster.kubectl
    kubectl("--namespace", release.namespace, "delete", "statefulset",
            f"{release.name}-zookeeper", "--wait")
    kubectl("--namespace", release.namespace, "delete", "pvc", "-l",
            f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=zookeeper")
    release.helm("upgrade", release.name, str(CHART_DIR), "--reuse-values",
                 "--set", "zookeeper.replicas=5")
    sts = json.loads(kubectl("--namespace", release.namespace, "get", "statefulset",
                             f"{release.name}-zookeeper", "-o", "json"))
    assert sts["spec"]["replicas"] == 5


def test_zookeeper_servers_spread_over_the_nodes_there_are(release: Release) -> None:
    # The local control plane has two nodes for three servers: the default spread places
    # them all (a hard anti-affinity would leave one Pending), one node carrying two.
    # (No PVCs: the local control plane has no volume provisioner.)
    release.install({"zookeeper": {"persistence": {"enabled": False}}})
    selector = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=zookeeper"

    def placed() -> list[str]:
        pods = json.loads(release.cluster.kubectl(
            "--namespace", release.namespace, "get", "pods", "-l", selector, "-o", "json"))
        return [p["spec"].get("nodeName", "") for p in pods["items"]]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (len(placed()) == 3 and all(placed())):
        time.sleep(0.5)
    nodes = placed()
    assert len(nodes) == 3 and all(nodes), f"not every server was scheduled: {nodes}"
    nodes_total = len(json.loads(release.cluster.kubectl("get", "nodes", "-o", "json"))["items"])
    assert sorted(nodes.count(node) for node in set(nodes)) == (
        [1, 1, 1] if nodes_total >= 3 else [1, 2])


def test_first_install_into_a_namespace_helm_creates_generates_credentials(
    cluster: LocalCluster,
) -> None:
    # `helm install --create-namespace` renders before the namespace exists: the list of
    # its Secrets is empty, not absent, so the chart sees a cluster and generates them.
    release = Release(cluster)
    try:
        release.helm("install", release.name, str(CHART_DIR), "--create-namespace",
                     values={})
        user, _, secret = release.password().partition(":")
        assert user == "leader-sidecar" and len(secret) == 40
    finally:
        cluster.kubectl("delete", "namespace", release.namespace, "--wait=false",
                        "--ignore-not-found", check=False)
