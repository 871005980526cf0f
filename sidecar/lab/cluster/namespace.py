"""A namespace of the real local control plane, as the sidecar meets it.

`KubeNamespace` is what a Kubernetes test, a benchmark or the soak touches:

- a namespace labelled for Pod Security `restricted` (admission enforces it on every pod
  the test creates);
- the chart's own ServiceAccount, Role and RoleBinding, rendered by the real `helm template`
  from `charts/leader-election` and applied with `kubectl`; the sidecar under test
  authenticates with a token for that ServiceAccount from the TokenRequest API, through a
  kubeconfig of its own, never as admin;
- a fault proxy between the sidecar and the apiserver (`slow()`);
- helpers that act as a person with `kubectl` would (create, label, annotate, delete pods,
  read Events), authenticated as the cluster admin;
- faults from the real parts: `down()`/`up()` stop and start kube-apiserver itself,
  `forbid(verb, resource)` removes a verb from the chart's Role and `revoke()` deletes the
  RoleBinding (real 403s), `heal()` puts all of it back;
- `requests()`: what the sidecar's ServiceAccount asked of the apiserver, from the
  apiserver's audit log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import yaml

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.lab.cluster.release import CHART
from sidecar.lab.faultproxy import FaultProxy

T = TypeVar("T")

RELEASE = "app"  # the chart's full name: pods app-0..app-2, ServiceAccount `app`
ROLE = f"{RELEASE}-sidecar"
RESTRICTED_POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def render_chart_rbac(
    cluster: LocalCluster, namespace: str, replicas: int = 3,
) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, Role and RoleBinding as `helm template` renders them
    (the Role lets the sidecars patch the pods `app-0` .. `app-<replicas - 1>` only)."""
    out = subprocess.run(
        [cluster.tool("helm"), "template", RELEASE, str(CHART), "--namespace", namespace,
         "--set", f"app.replicas={replicas}", "--show-only", "templates/rbac.yaml",
         # Rendered with no cluster, the chart refuses to invent ZooKeeper credentials
         # and certificates (each render would differ); the Role depends on neither.
         "--set", "zkAuth.enabled=false", "--set", "zookeeper.tls.enabled=false"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    verb: str
    resource: str | None
    name: str | None
    params: dict[str, str]
    body: Any
    code: int | None


class KubeNamespace:
    def __init__(self, cluster: LocalCluster, namespace: str, directory: Path,
                 *, token_seconds: int = 3600, replicas: int = 3,
                 listen_host: str = "127.0.0.1") -> None:
        """`listen_host`: where the apiserver's proxy listens (an address of this machine
        the sidecars can route to: the namespaced soak's bridge, which forwards their
        127.0.0.1 there, so that the certificate's name still matches)."""
        self.cluster = cluster
        self.listen_host = listen_host
        self.token_seconds = token_seconds
        self.replicas = replicas
        self.namespace = namespace
        self.directory = directory
        # Untyped on purpose: the lab writes bodies as plain dicts, as kubectl users do.
        self.admin_client: Any = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(cluster.kubeconfig))
        self.core: Any = kubernetes.client.CoreV1Api(self.admin_client)
        self.rbac: Any = kubernetes.client.RbacAuthorizationV1Api(self.admin_client)
        self.proxy: FaultProxy | None = None
        self.kubeconfig_path = directory / "sidecar-kubeconfig.yaml"
        self.user = f"system:serviceaccount:{namespace}:{RELEASE}"
        self._rbac_objects: list[dict[str, Any]] = []
        self.is_down = False

    # --- set-up --------------------------------------------------------------------------

    def create(self) -> KubeNamespace:
        self.cluster.ensure_components()
        self.core.create_namespace({"metadata": {
            "name": self.namespace, "labels": RESTRICTED_POD_SECURITY}})
        self._rbac_objects = render_chart_rbac(self.cluster, self.namespace, self.replicas)
        self.apply_rbac()
        # A sidecar started before the authorizer's informer has the binding gets 403s
        # first; the tests and the soak start from a namespace where the chart works.
        self.wait_allowed("patch", "pods", True)
        upstream = urllib.parse.urlsplit(self.cluster.server())
        self.proxy = FaultProxy(int(upstream.port or 443), listen_host=self.listen_host)
        token = self.token(self.token_seconds)
        self.kubeconfig_path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sidecar",
            "clusters": [{"name": "local", "cluster": {
                "server": f"https://127.0.0.1:{self.proxy.port}",
                "certificate-authority": str(self.cluster.ca_path)}}],
            "users": [{"name": "sidecar", "user": {"token": token}}],
            "contexts": [{"name": "sidecar", "context": {
                "cluster": "local", "user": "sidecar", "namespace": self.namespace}}],
        }))
        return self

    def apply_rbac(self) -> None:
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-",
                             input=yaml.safe_dump_all(self._rbac_objects))

    def token(self, seconds: int = 3600) -> str:
        request = {"spec": {"audiences": [], "expirationSeconds": seconds}}
        answer = self.core.create_namespaced_service_account_token(
            RELEASE, self.namespace, request)
        return str(answer.status.token)

    def delete(self) -> None:
        try:
            if self.is_down:  # a test that failed with the apiserver stopped
                self.up()
            self.core.delete_namespace(self.namespace, grace_period_seconds=0)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
        finally:
            if self.proxy is not None:
                self.proxy.close()
            self.admin_client.close()

    # --- as a person with kubectl --------------------------------------------------------

    def add_pod(self, name: str, labels: dict[str, str] | None = None, *,
                scheduled: bool = True) -> dict[str, Any]:
        """A pod on the lab's kwok nodes; `scheduled=False` keeps it Pending on no node.

        A pod that a test deletes and makes again under the same name must stay off kwok's
        nodes: kwok plays its stages by name, without the uid (its delete carries no
        precondition), so a stage queued for the old pod could delete the new one."""
        spec = pod_spec()
        if not scheduled:
            spec["nodeSelector"] = {"type": "no-such-node"}
        body = {"metadata": {"name": name, "labels": dict(labels or {})}, "spec": spec}
        return self._dict(self.core.create_namespaced_pod(self.namespace, body))

    def patch_pod(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._dict(self.core.patch_namespaced_pod(name, self.namespace, patch))

    def label_pod(self, name: str, key: str, value: str | None) -> dict[str, Any]:
        return self.patch_pod(name, {"metadata": {"labels": {key: value}}})

    def annotate_pod(self, name: str, key: str, value: str | None) -> dict[str, Any]:
        return self.patch_pod(name, {"metadata": {"annotations": {key: value}}})

    def delete_pod(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def pod(self, name: str) -> dict[str, Any]:
        return self._dict(self.core.read_namespaced_pod(name, self.namespace))

    def pods(self) -> list[dict[str, Any]]:
        return [self._dict(p) for p in self.core.list_namespaced_pod(self.namespace).items]

    def labels(self, name: str) -> dict[str, str]:
        return dict(self.pod(name)["metadata"].get("labels") or {})

    def annotations(self, name: str) -> dict[str, str]:
        return dict(self.pod(name)["metadata"].get("annotations") or {})

    def events(self, pod: str | None = None, reason: str | None = None,
               component: str = "leader-sidecar") -> list[dict[str, Any]]:
        """Events on `pod` that `component` posted (not the scheduler's `Scheduled`)."""
        found = [self._dict(e) for e in self.core.list_namespaced_event(self.namespace).items]
        found = [e for e in found
                 if (pod is None or e["involvedObject"].get("name") == pod)
                 and (reason is None or e.get("reason") == reason)
                 and (e.get("source") or {}).get("component") == component]
        # Names are `<pod>.<hex nanoseconds>`, as client-go makes them: they sort by time.
        return sorted(found, key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))

    def reasons(self, pod: str) -> list[str]:
        return [e["reason"] for e in self.events(pod)]

    def _dict(self, obj: Any) -> dict[str, Any]:
        return dict(self.admin_client.sanitize_for_serialization(obj))

    # --- faults from the real parts ------------------------------------------------------

    def down(self) -> None:
        self.is_down = True
        self.cluster.stop_apiserver()

    def up(self) -> None:
        self.cluster.start_apiserver()
        self.is_down = False

    def slow(self, seconds: float) -> None:
        assert self.proxy is not None
        self.proxy.delay(seconds)

    def forbid(self, verb: str, resource: str) -> None:
        """Take `verb` on `resource` out of the chart's Role (as a mistaken edit would)."""
        role = self.rbac.read_namespaced_role(ROLE, self.namespace)
        for rule in role.rules:
            if resource in rule.resources and verb in rule.verbs:
                rule.verbs = [v for v in rule.verbs if v != verb]
        role.rules = [rule for rule in role.rules if rule.verbs]
        self.rbac.replace_namespaced_role(ROLE, self.namespace, role)
        self.wait_allowed(verb, resource, False)

    def revoke(self) -> None:
        """Delete the RoleBinding: every call of the sidecar gets 403."""
        self.rbac.delete_namespaced_role_binding(ROLE, self.namespace)
        self.wait_allowed("patch", "pods", False)

    def heal(self) -> None:
        if self.proxy is not None:
            self.proxy.heal()
        self.apply_rbac()
        role = next(doc for doc in self._rbac_objects if doc["kind"] == "Role")
        for rule in role["rules"]:
            for verb in rule["verbs"]:
                self.wait_allowed(verb, rule["resources"][0], True)

    def allowed(self, verb: str, resource: str) -> bool:
        """What the apiserver's authorizer says of the sidecar's ServiceAccount right now."""
        authorization: Any = kubernetes.client.AuthorizationV1Api(self.admin_client)
        review = authorization.create_subject_access_review(
            {"spec": {
                "user": self.user,
                "groups": ["system:serviceaccounts",
                           f"system:serviceaccounts:{self.namespace}", "system:authenticated"],
                "resourceAttributes": {"namespace": self.namespace, "verb": verb,
                                       "resource": resource, "name": "app-0"},
            }})
        return bool(review.status.allowed)

    def wait_allowed(self, verb: str, resource: str, allowed: bool) -> None:
        """RBAC changes reach the authorizer through an informer: wait until they did."""
        wait_until(lambda: self.allowed(verb, resource) == allowed, timeout=30,
                   message=f"RBAC: {verb} {resource} allowed={allowed}")

    # --- what the sidecar asked (the apiserver's audit log) ------------------------------

    def requests(self, verb: str | None = None, resource: str | None = None) -> list[AuditRecord]:
        records: list[AuditRecord] = []
        if not self.cluster.audit_log.exists():
            return records
        for line in self.cluster.audit_log.read_text().splitlines():
            if self.user not in line:  # cheap: most of the log is other tests' namespaces
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("user", {}).get("username") != self.user:
                continue
            ref = event.get("objectRef") or {}
            if ref.get("namespace") != self.namespace:
                continue
            record = AuditRecord(
                verb=event.get("verb", ""), resource=ref.get("resource"), name=ref.get("name"),
                params=dict(urllib.parse.parse_qsl(
                    urllib.parse.urlsplit(event.get("requestURI", "")).query)),
                body=event.get("requestObject"),
                code=(event.get("responseStatus") or {}).get("code"),
            )
            if (verb is None or record.verb == verb) and (
                    resource is None or record.resource == resource):
                records.append(record)
        return records


def pod_spec() -> dict[str, Any]:
    """The spec of the tests' pods: a pause container on the lab's kwok nodes, meeting the
    `restricted` profile, under the chart's ServiceAccount (admission needs the account to
    exist, and `default` appears only when the controller-manager gets to it)."""
    return {
        "serviceAccountName": RELEASE,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app", "image": "registry.k8s.io/pause:3.10",
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
        }],
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                         "effect": "NoSchedule"}],
    }


def wait_until(
    predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Poll until `predicate()` is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (kubernetes.client.ApiException, KeyError) as error:
            last_error, value = error, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} within {timeout} s (last error: {last_error})")


def names(pods: Iterable[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


@contextlib.contextmanager
def cluster_namespace(directory: Path, name: str = "bench") -> Iterator[KubeNamespace]:
    """A local control plane of its own with one namespace, for benchmarks; removed after."""
    cluster = LocalCluster(f"{name}-{os.getpid()}", binaries.cache_root() / "bench-clusters",
                           nodes=1, bin_dir=binaries.ensure_built())
    try:
        cluster.up()
        namespace = KubeNamespace(cluster, name, directory).create()
        try:
            yield namespace
        finally:
            namespace.delete()
    finally:
        cluster.down()
