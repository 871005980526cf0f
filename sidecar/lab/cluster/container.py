"""How the pod runner turns a container of a pod spec into a local process's environment,
the way the kubelet would: env values, the downward API (`fieldRef`), `secretKeyRef` and
`configMapKeyRef` read through the API, `envFrom`; the role directory mount pointed at a
directory of the pod's own; a loopback port for `HTTP_PORT`; and a kubeconfig naming a
TokenRequest token of the pod's ServiceAccount, bound to the pod (see podrunner.py for why
a kubeconfig and not the in-cluster paths).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from sidecar.lab.cluster.control_plane import LocalCluster

CONTAINER = "leader-sidecar"
# The kubelet asks for 3607 s: the apiserver then extends the pod-bound token (it stays
# valid while the pod lives), because the Python client reads a tokenFile only once.
TOKEN_SECONDS = 3607


class ContainerEnvironment:
    """Builds the environment of a pod's sidecar container (`core`: an admin CoreV1Api)."""

    def __init__(self, cluster: LocalCluster, core: Any) -> None:
        self.cluster = cluster
        self.core = core

    def environment(self, pod: Any, container: Any, directory: Path, role_dir: Path,
                    port: int) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if key in ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")}
        for source in container.env_from or []:
            env.update(self._env_from(source, pod.metadata.namespace))
        for item in container.env or []:
            value = self._env_value(pod, item)
            if value is not None:
                env[item.name] = value
        mount = _mount_path(container, "role-dir")
        if mount is None or env.get("ROLE_DIR", mount) == mount:
            env["ROLE_DIR"] = str(role_dir)
        env["HTTP_PORT"] = str(port)
        env["HTTP_HOST"] = "127.0.0.1"
        env["KUBECONFIG"] = str(self._kubeconfig(pod, directory))
        env.pop("KUBERNETES_SERVICE_HOST", None)
        return env

    def _env_value(self, pod: Any, item: Any) -> str | None:
        if item.value_from is None:
            return str(item.value or "")
        source = item.value_from
        if source.field_ref is not None:
            return _field(pod, source.field_ref.field_path)
        if source.secret_key_ref is not None:
            ref = source.secret_key_ref
            secret = self.core.read_namespaced_secret(ref.name, pod.metadata.namespace)
            return base64.b64decode((secret.data or {})[ref.key]).decode()
        if source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            return str(self.core.read_namespaced_config_map(ref.name, pod.metadata.namespace)
                       .data[ref.key])
        return None

    def _env_from(self, source: Any, namespace: str) -> dict[str, str]:
        prefix = source.prefix or ""
        if source.secret_ref is not None:
            data = self.core.read_namespaced_secret(source.secret_ref.name, namespace).data
            return {prefix + k: base64.b64decode(v).decode() for k, v in (data or {}).items()}
        if source.config_map_ref is not None:
            data = self.core.read_namespaced_config_map(
                source.config_map_ref.name, namespace).data
            return {prefix + k: str(v) for k, v in (data or {}).items()}
        return {}

    def _kubeconfig(self, pod: Any, directory: Path) -> Path:
        token_file = directory / "token"
        self._write_token(pod, token_file)
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "local", "cluster": {
                "server": self.cluster.server(),
                "certificate-authority": str(self.cluster.ca_path)}}],
            "users": [{"name": "pod", "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod"}}],
        }))
        return path

    def _write_token(self, pod: Any, token_file: Path) -> None:
        request = {"spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                               "name": pod.metadata.name, "uid": pod.metadata.uid}}}
        answer = self.core.create_namespaced_service_account_token(
            pod.spec.service_account_name or "default", pod.metadata.namespace, request)
        partial = token_file.with_suffix(".partial")
        partial.write_text(answer.status.token)
        partial.rename(token_file)


def failure_threshold(pod: Any) -> int:
    container = sidecar_container(pod)
    probe = container.readiness_probe if container is not None else None
    return int(probe.failure_threshold or 3) if probe is not None else 3


def sidecar_container(pod: Any) -> Any:
    for container in (pod.spec.init_containers or []) + (pod.spec.containers or []):
        if container.name == CONTAINER:
            return container
    return None


def _mount_path(container: Any, volume: str) -> str | None:
    for mount in container.volume_mounts or []:
        if mount.name == volume:
            return str(mount.mount_path)
    return None


def _field(pod: Any, path: str) -> str:
    values = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.podIP": pod.status.pod_ip if pod.status else None,
        "status.hostIP": pod.status.host_ip if pod.status else None,
    }
    if path not in values:
        raise ValueError(f"fieldRef {path!r} is not supported by the pod runner")
    return str(values[path] or "")
