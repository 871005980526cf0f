"""The files a user with Docker runs: kind config, Dockerfile, and the kind scripts.

CI has no Docker, so the kind-only steps of the scripts (`kind create cluster`, `docker
build`, `kind load`) are checked here against a recorder that stands in for docker, kind,
helm and kubectl. Everything after them runs for real with `TARGET=local` on the real
node, with the real helm and kubectl (tests/node/test_kind_flow.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from chart_support import CHART_DIR, REPO, Manifests

FAKES = Path(__file__).parent / "fakes"
DIGEST = re.compile(r"^kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}$")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_kind_cluster_has_one_control_plane_and_three_workers() -> None:
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert sorted(roles) == ["control-plane", "worker", "worker", "worker"]
    images = {node["image"] for node in config["nodes"]}
    assert len(images) == 1 and DIGEST.match(images.pop())


def test_image_is_multi_stage_slim_and_installed_from_a_wheel() -> None:
    instructions = dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    base = next(rest for keyword, rest in instructions if keyword == "ARG")
    assert re.search(r"python:3\.\d+-slim", base)
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip wheel" in runs
    final_runs = " ".join(rest for keyword, rest in final_stage() if keyword == "RUN")
    assert "--no-index --find-links /wheels" in final_runs


def test_image_runs_the_console_script_as_a_non_root_user() -> None:
    stage = final_stage()
    (user,) = [rest for keyword, rest in stage if keyword == "USER"]
    uid = user.split(":")[0]
    # Numeric, so that the kubelet can verify runAsNonRoot without /etc/passwd.
    assert uid.isdigit() and int(uid) != 0
    (entrypoint,) = [rest for keyword, rest in stage if keyword == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["leader-sidecar"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "leader-sidecar" in scripts
    env = " ".join(rest for keyword, rest in stage if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem


def test_chart_runs_the_image_as_its_own_user(default: Manifests) -> None:
    (user,) = [rest for keyword, rest in final_stage() if keyword == "USER"]
    uid = int(user.split(":")[0])
    for name in ("leader-sidecar", "app"):
        context = default.container(name)["securityContext"]
        assert context["runAsUser"] == uid
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["image"]["repository"] == "leader-sidecar"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: only named files reach the build context"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and "--from" not in rest:
            copied.update(rest.split()[:-1])
    assert copied <= kept, copied - kept


@pytest.mark.parametrize("script", ["kind-up.sh", "kind-failover.sh", "kind-down.sh"])
def test_scripts_are_valid_bash(script: str) -> None:
    subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


def run_script(
    script: str, path: str, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": path,
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
    }
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(REPO / "scripts" / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("script", "present", "missing"),
    [
        ("kind-up.sh", [], "docker"),
        ("kind-up.sh", ["docker", "kind"], "helm"),
        ("kind-failover.sh", [], "kubectl"),
        ("kind-down.sh", [], "kind"),
    ],
)
def test_a_missing_tool_stops_the_script_with_one_clear_line(
    script: str, present: list[str], missing: str, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in present:
        (bin_dir / tool).symlink_to(FAKES / "recorder")
    result = run_script(script, str(bin_dir), tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"'{missing}' is required but not found on PATH" in result.stderr


def fake_path(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kind", "helm", "kubectl"):
        (bin_dir / tool).symlink_to(FAKES / "recorder")
    return f"{bin_dir}:/usr/bin:/bin"


def test_kind_up_creates_builds_loads_installs_and_tests(tmp_path: Path) -> None:
    result = run_script("kind-up.sh", fake_path(tmp_path), tmp_path, "--set", "x=y")
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    steps = [c.split()[0] + " " + c.split()[1] for c in calls]
    assert steps == [
        "docker info",
        "kind get",
        "kind create",
        "docker build",
        "docker image",
        "docker tag",
        "kind load",
        "helm upgrade",
        "helm test",
        "kubectl --context",
    ]
    create = next(c for c in calls if c.startswith("kind create"))
    assert f"--config {REPO}/kind-config.yaml" in create
    tag = "leader-sidecar:dev-0123456789ab"
    assert f"kind load docker-image {tag} --name leader-sidecar" in calls
    install = next(c for c in calls if c.startswith("helm upgrade"))
    assert f"--install demo {CHART_DIR}" in install
    assert "--wait" in install and install.endswith("--set x=y")
    assert "--set image.tag=dev-0123456789ab --set image.pullPolicy=Never" in install
    assert (
        "helm test demo --kube-context kind-leader-sidecar --namespace leader-election --logs"
        in calls
    )


@pytest.mark.parametrize(("script", "env", "says"), [
    ("kind-up.sh", {"TARGET": "minikube"}, "TARGET is kind or local, not 'minikube'"),
    ("kind-failover.sh", {"TARGET": "minikube"}, "TARGET is kind or local, not 'minikube'"),
    ("kind-up.sh", {"TARGET": "local"}, "TARGET=local needs KUBECONFIG"),
])
def test_a_bad_target_is_one_line_and_status_2(script: str, env: dict[str, str], says: str,
                                                tmp_path: Path) -> None:
    result = subprocess.run(
        [shutil.which("bash") or "bash", str(REPO / "scripts" / script)],
        env={"PATH": fake_path(tmp_path), "FAKE_LOG": str(tmp_path / "calls.log"), **env},
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr


def test_kind_up_reuses_an_existing_cluster(tmp_path: Path) -> None:
    path = fake_path(tmp_path)
    env_cluster = {"FAKE_CLUSTERS": "leader-sidecar"}
    result = subprocess.run(
        [shutil.which("bash") or "bash", str(REPO / "scripts" / "kind-up.sh")],
        env={
            "PATH": path,
            "FAKE_LOG": str(tmp_path / "calls.log"),
            **env_cluster,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "kind create" not in (tmp_path / "calls.log").read_text()


def test_kind_down_deletes_the_cluster_only_if_it_exists(tmp_path: Path) -> None:
    path = fake_path(tmp_path)
    result = run_script("kind-down.sh", path, tmp_path)
    assert result.returncode == 0 and "nothing to delete" in result.stdout
    assert "kind delete" not in (tmp_path / "calls.log").read_text()
    env = {"PATH": path, "FAKE_LOG": str(tmp_path / "calls.log"), "FAKE_CLUSTERS": "leader-sidecar"}
    subprocess.run(
        [shutil.which("bash") or "bash", str(REPO / "scripts" / "kind-down.sh")],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert "kind delete cluster --name leader-sidecar" in (tmp_path / "calls.log").read_text()


def test_fakes_are_executable() -> None:
    for fake in FAKES.iterdir():
        assert os.access(fake, os.X_OK), fake


def test_dockerfile_says_it_needs_buildkit() -> None:
    # `RUN --mount` is a BuildKit feature: the legacy builder stops with "the --mount
    # option requires BuildKit", so the build instructions must say so.
    text = (REPO / "Dockerfile").read_text()
    assert any(k == "RUN" and a.startswith("--mount=") for k, a in dockerfile_instructions())
    header = text.split("\nFROM", 1)[0]
    assert "BuildKit" in header and "DOCKER_BUILDKIT=1" in header
    assert "BuildKit" in (REPO / "docs" / "deployment.md").read_text()


def test_docs_say_kindnet_enforces_network_policies() -> None:
    # kindnet enforces NetworkPolicies since kind v0.24 (2024): the docs must not promise
    # that a kind cluster ignores them.
    for path in (REPO / "docs" / "security.md", REPO / "docs" / "deployment.md",
                 CHART_DIR / "values.yaml"):
        text = " ".join(path.read_text().split())
        assert not re.search(r"kindnet[^.]{0,40}(does not|ignores)", text), path
    assert "v0.24" in " ".join((REPO / "docs" / "security.md").read_text().split())
