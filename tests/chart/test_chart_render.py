"""The chart renders with the real `helm` for every values combination, passes strict lint,
and every manifest is valid for the oldest and the newest Kubernetes the chart supports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
from chart_support import (
    COMBINATIONS,
    NAMESPACE,
    NEWEST,
    OLDEST_NATIVE,
    OLDEST_PLAIN,
    RELEASE,
    HelmError,
    Manifests,
    lint,
)


def supported_versions(values: dict[str, Any]) -> list[str]:
    native = values.get("sidecar", {}).get("native", True)
    return [OLDEST_NATIVE if native else OLDEST_PLAIN, NEWEST]


def test_kubernetes_validate_ships_the_versions_we_claim() -> None:
    # If a kubernetes-validate upgrade drops 1.25 or adds a newer release, the support
    # statement in Chart.yaml and docs/deployment.md must follow.
    assert kubernetes_validate.utils.latest_version() == NEWEST
    assert "1.25.0" in kubernetes_validate.utils.all_versions()


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_every_manifest_is_valid_kubernetes(name: str, render: Callable[..., Manifests]) -> None:
    values = COMBINATIONS[name]
    problems = []
    for version in supported_versions(values):
        for obj in render(values, version).objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = "/".join(str(p) for p in error.path)
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                problems.append(f"{version} {name} at {where}: {error.message}")
    assert not problems, "\n".join(problems)


def test_native_sidecar_manifests_are_rejected_by_kubernetes_1_28(
    render: Callable[..., Manifests],
) -> None:
    # The reason the native sidecar needs 1.29: older API servers do not know the field.
    oldest_native = render({}, OLDEST_NATIVE)
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(oldest_native.app, OLDEST_PLAIN, strict=True)


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_strict_lint_has_no_errors_or_warnings(name: str) -> None:
    passed, report = lint(COMBINATIONS[name], NEWEST)
    assert passed and "[WARNING]" not in report and "[ERROR]" not in report, report


def test_lint_on_the_oldest_supported_cluster() -> None:
    plain = {"sidecar": {"native": False}}
    passed, report = lint(plain, "1.25.0")
    assert passed, report


def test_native_sidecar_on_kubernetes_1_28_fails_with_a_clear_message(
    render: Callable[..., Manifests],
) -> None:
    # Without the check the API server would drop the unknown restartPolicy field and the
    # sidecar would become an init container that never ends: pods stuck in Init forever.
    with pytest.raises(HelmError, match=r"set sidecar\.native=false"):
        render({}, "1.28.9")
    plain = render({"sidecar": {"native": False}}, "1.28.9")
    assert plain.container("leader-sidecar") in plain.app_pod["containers"]


def test_default_release_has_the_expected_objects(default: Manifests) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default.objects)
    assert kinds == sorted(
        [
            ("StatefulSet", RELEASE),
            ("StatefulSet", f"{RELEASE}-zookeeper"),
            ("Service", f"{RELEASE}-leader"),
            ("Service", f"{RELEASE}-headless"),
            ("Service", f"{RELEASE}-zookeeper"),
            ("Service", f"{RELEASE}-zookeeper-headless"),
            *[("Service", f"{RELEASE}-zookeeper-{i}") for i in range(3)],  # each server's
            ("ConfigMap", f"{RELEASE}-zookeeper-scripts"),  # zk-4lw, for the probes
            ("PodDisruptionBudget", RELEASE),
            ("PodDisruptionBudget", f"{RELEASE}-zookeeper"),
            ("ServiceAccount", RELEASE),
            ("Role", f"{RELEASE}-sidecar"),
            ("RoleBinding", f"{RELEASE}-sidecar"),
            ("Secret", f"{RELEASE}-zk-auth"),
            ("NetworkPolicy", f"{RELEASE}-zookeeper"),
            ("NetworkPolicy", f"{RELEASE}-app"),
            ("NetworkPolicy", f"{RELEASE}-tests"),
            ("Pod", f"{RELEASE}-test-zookeeper-quorum"),
            ("Pod", f"{RELEASE}-test-one-leader"),
            ("Pod", f"{RELEASE}-test-leader-service"),
        ]
    )
    assert all(o["metadata"].get("namespace") in (None, NAMESPACE) for o in default.objects)


def test_notes_tell_how_to_find_the_leader_fail_over_and_step_down(
    render_raw: Any,
) -> None:
    notes = render_raw({})["leader-election/templates/NOTES.txt"]
    assert "-L role" in notes
    assert (
        f"-l app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=app,role=leader"
        in notes
    )
    assert "kubectl delete" in notes and "--grace-period=0 --force" in notes
    assert "leader-election/step-down" in notes
    assert f"svc/{RELEASE}-leader" in notes
    assert f"helm test {RELEASE}" in notes
