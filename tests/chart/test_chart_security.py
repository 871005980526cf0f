"""Every pod of the chart meets the restricted Pod Security Standard, so the release
installs into a namespace labelled pod-security.kubernetes.io/enforce=restricted."""

from __future__ import annotations

from typing import Any

from chart_support import Manifests

# Volume types the restricted profile allows.
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as Kubernetes applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.get("securityContext", {}).get(key)


def restricted_violations(name: str, pod: dict[str, Any]) -> list[str]:
    problems = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{name}: {flag}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"{name}: volume {volume['name']} is {kinds}")
    for container in pod.get("initContainers", []) + pod["containers"]:
        where = f"{name}/{container['name']}"
        context = container.get("securityContext", {})
        if effective(pod, container, "runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot")
        if effective(pod, container, "runAsUser") in (0, None):
            problems.append(f"{where}: runAsUser must be a non-zero uid")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation")
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        capabilities = context.get("capabilities", {})
        if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
            problems.append(f"{where}: capabilities must drop ALL and add none")
        seccomp = effective(pod, container, "seccompProfile") or {}
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            problems.append(f"{where}: hostPort")
    return problems


def test_every_container_meets_the_restricted_profile(combination: Manifests) -> None:
    problems = [
        problem
        for name, pod in combination.pod_specs()
        for problem in restricted_violations(name, pod)
    ]
    assert not problems, "\n".join(problems)


def test_the_check_itself_catches_a_privileged_container() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"privileged": True}}]}
    problems = restricted_violations("pod", pod)
    assert "pod/c: privileged" in problems and "pod/c: runAsNonRoot" in problems


def test_every_container_has_memory_limits(combination: Manifests) -> None:
    for name, pod in combination.pod_specs():
        for container in pod.get("initContainers", []) + pod["containers"]:
            resources = container.get("resources", {})
            assert "memory" in resources.get("limits", {}), f"{name}/{container['name']}"
            assert "memory" in resources.get("requests", {}), f"{name}/{container['name']}"
