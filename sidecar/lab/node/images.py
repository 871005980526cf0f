"""Build the lab node's container images here: no Docker engine, no image pulled from a registry.

`ensure_images(coredns_binary)` returns, for each image the node runs, an archive that
`ctr -n k8s.io images import` loads under the image's name:

- `localhost/bookworm:minbase`: a Debian bookworm root filesystem made by
  `debootstrap --variant=minbase`, as one layer. A base for the others (and the node's
  helper pods).
- `localhost/python:3.11-bookworm`: the stand-in for `python:3.12-slim-bookworm`
  (images/python/Containerfile says how it differs).
- `localhost/leader-sidecar:dev`: the repository's own Dockerfile, built on the above.
- `localhost/leader-sidecar-lab/zookeeper:3.9.4`: the stand-in for the official
  `zookeeper:3.9.4` (images/zookeeper/), ZooKeeper's jars fetched from Maven Central.
- `localhost/pause:3.10`: Kubernetes' pause.c (k8s.io/kubernetes in the Go module cache),
  compiled static.
- `localhost/coredns:1.15.0`: the CoreDNS binary given by the caller.

Everything lives under `<cache_root>/images/` (`cache_root()` of
sidecar.lab.cluster.binaries): buildah's storage (`storage/`, `run/`, `tmp/`), the
debootstrap tree and build contexts while they are needed (`work/`), Maven's repository
(`maven-repo/`), build logs (`logs/`) and the archives (`archives/`). Nothing is written
to /var/lib/containers, /var/tmp or the repository.

Guaranteed: each archive is named after a digest of everything its image is made from
(its Containerfile and scripts, the lock file, the source files, the parent image's
digest, ...), and appears only once complete (written aside, then renamed). So a call
with every archive present computes the digests (reads the inputs, runs `git ls-files`)
and returns in well under a second without running buildah; a change to the sidecar's
source rebuilds only `localhost/leader-sidecar:dev`, which reuses buildah's cached layers
(`--layers`: the locked dependency wheels are not fetched again). Archives of earlier
digests are deleted once a new one is written. Builds are serialised by a lock file.
Progress (which image, how long it took, the total) goes to stderr, `[images] ...`, and
each build's full output to `logs/<image>.log`.
Not guaranteed: that a rebuild is byte-identical (package mirrors move on; apt installs
the current bookworm packages) or that a first build fits any time budget (about two
minutes on two cores with fast mirrors, mostly debootstrap, apt and pip). Building needs
root, buildah, debootstrap, Maven, gcc and network access to Debian's mirror, PyPI and
Maven Central; buildah's storage keeps unused layers until
`buildah --root <cache>/images/storage rmi --prune`.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from sidecar.lab.cluster.binaries import cache_root

MINBASE = "localhost/bookworm:minbase"
PYTHON = "localhost/python:3.11-bookworm"
PROJECT = "localhost/leader-sidecar:dev"
ZOOKEEPER = "localhost/leader-sidecar-lab/zookeeper:3.9.4"
PAUSE = "localhost/pause:3.10"
COREDNS = "localhost/coredns:1.15.0"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_ARGS = ("--variant=minbase", DEBIAN_SUITE)
# What the minbase tree loses before it becomes a layer: apt's caches and lists (as in
# debian:bookworm), the build host's resolv.conf and hostname (the runtime mounts its
# own; the files stay, empty, as mount points), the device nodes (the runtime provides
# /dev) and debootstrap's log.
MINBASE_REMOVE = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                  "dev/*", "var/log/bootstrap.log")
MINBASE_EMPTY = ("etc/resolv.conf", "etc/hostname")
MINBASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

# pause.c of the Kubernetes release the lab runs, with the flags of its Makefile.
PAUSE_MODULE = "k8s.io/kubernetes"
PAUSE_MODULE_VERSION = "v1.37.2"
PAUSE_SOURCE = "build/pause/linux/pause.c"
PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.10-leader-sidecar")

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Every image built here carries its input digest in this label: a parent found in
# buildah's storage is used only if it is the one the digests were computed against.
INPUTS_LABEL = "io.github.leader-sidecar.inputs"


class ImageError(Exception):
    """An image could not be built (or a tool or input is missing); the message is one line."""


def repo_root() -> Path:
    """The checkout this package runs from (its Dockerfile and images/ are the inputs)."""
    return Path(__file__).resolve().parents[3]


def images_root() -> Path:
    return cache_root() / "images"


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


# --- input digests ----------------------------------------------------------------------

class _Digest:
    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def text(self, name: str, value: str) -> None:
        self.data(name, value.encode())

    def data(self, name: str, value: bytes) -> None:
        self._sha.update(f"{name}\0{len(value)}\0".encode())
        self._sha.update(value)

    def file(self, path: Path, name: str | None = None) -> None:
        try:
            self.data(name or str(path), path.read_bytes())
        except OSError as error:
            raise ImageError(f"cannot read {path}: {error.strerror}") from None

    def hexdigest(self) -> str:
        return self._sha.hexdigest()[:16]


def _source_files(root: Path, top: str) -> list[str]:
    """Files under `top` that a build context holds: git's view (tracked plus untracked
    and not ignored) in a checkout, else a walk without caches."""
    if (root / ".git").exists() and shutil.which("git"):
        result = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard", "--", top],
            capture_output=True, check=False)
        if result.returncode == 0:
            names = {name for name in result.stdout.decode().split("\0") if name}
            return sorted(name for name in names if (root / name).is_file())
    found: list[str] = []
    for directory, subdirs, files in os.walk(root / top):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        found += [str(Path(directory, f).relative_to(root)) for f in files
                  if not f.endswith(".pyc")]
    return sorted(found)


def _file_sha256(path: Path) -> str:
    """sha256 of a (large) file, remembered by path, size and mtime in the cache."""
    try:
        stat = path.stat()
    except OSError as error:
        raise ImageError(f"cannot read {path}: {error.strerror}") from None
    memo = images_root() / "file-digests.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        known: dict[str, str] = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    known = {k: v for k, v in known.items() if not k.startswith(f"{path.resolve()}:")}
    known[key] = sha.hexdigest()
    try:  # only a shortcut: a cache this process may not write is no error
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial = memo.with_name(f".{memo.name}.{os.getpid()}")
        partial.write_text(json.dumps(known, indent=1))
        partial.replace(memo)
    except OSError:
        pass
    return known[key]


# --- the images -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Image:
    name: str
    parent: str | None
    add_inputs: Callable[[_Digest], None]
    build: Callable[[_Builder, _Planned], None]

    @property
    def slug(self) -> str:
        return self.name.removeprefix("localhost/").replace("/", "_").replace(":", "_")


@dataclasses.dataclass(frozen=True)
class _Planned:
    image: _Image
    key: str
    archive: Path


def _images(coredns_binary: Path) -> tuple[_Image, ...]:
    src = repo_root()
    images = src / "images"

    def minbase_inputs(d: _Digest) -> None:
        d.text("debootstrap", " ".join((*DEBOOTSTRAP_ARGS, DEBIAN_MIRROR)))
        d.text("recipe", repr((MINBASE_REMOVE, MINBASE_EMPTY, MINBASE_ENV)))
        d.file(images / "minbase" / "debian.sources", "debian.sources")

    def python_inputs(d: _Digest) -> None:
        d.file(images / "python" / "Containerfile", "Containerfile")
        d.file(HOST_CA_BUNDLE, "ca-bundle")

    def project_inputs(d: _Digest) -> None:
        d.text("build-arg", f"PYTHON_IMAGE={PYTHON}")
        for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md",
                     "requirements/image.lock", *_source_files(src, "sidecar")):
            d.file(src / name, name)

    def zookeeper_inputs(d: _Digest) -> None:
        for path in sorted((images / "zookeeper").iterdir()):
            if path.is_file():
                d.file(path, path.name)
                d.text(f"{path.name}:mode", oct(path.stat().st_mode & 0o777))

    def pause_inputs(d: _Digest) -> None:
        # The module cache's files are immutable for a version (go.sum checks them).
        d.text("source", f"{PAUSE_MODULE}@{PAUSE_MODULE_VERSION}/{PAUSE_SOURCE}")
        d.text("cflags", " ".join(PAUSE_CFLAGS))
        d.file(images / "pause" / "Containerfile", "Containerfile")

    def coredns_inputs(d: _Digest) -> None:
        d.text("coredns", _file_sha256(coredns_binary))
        d.file(images / "coredns" / "Containerfile", "Containerfile")

    return (
        _Image(MINBASE, None, minbase_inputs, _build_minbase),
        _Image(PYTHON, MINBASE, python_inputs, _build_python),
        _Image(PROJECT, PYTHON, project_inputs, _build_project),
        _Image(ZOOKEEPER, MINBASE, zookeeper_inputs, _build_zookeeper),
        _Image(PAUSE, None, pause_inputs, _build_pause),
        _Image(COREDNS, None, coredns_inputs, _build_coredns(coredns_binary)),
    )


def _plan(coredns_binary: Path) -> list[_Planned]:
    keys: dict[str, str] = {}
    plan: list[_Planned] = []
    archives = images_root() / "archives"
    for image in _images(coredns_binary):
        digest = _Digest()
        digest.text("name", image.name)
        if image.parent is not None:
            digest.text("parent", keys[image.parent])
        image.add_inputs(digest)
        keys[image.name] = key = digest.hexdigest()
        plan.append(_Planned(image, key, archives / f"{image.slug}-{key}.tar"))
    return plan


def ensure_images(coredns_binary: Path) -> dict[str, Path]:
    """Build what is missing; returns image name -> archive for `ctr images import`."""
    if not coredns_binary.is_file():
        raise ImageError(f"no CoreDNS binary at {coredns_binary}")
    plan = _plan(coredns_binary)
    result = {planned.image.name: planned.archive for planned in plan}
    if all(planned.archive.exists() for planned in plan):
        return result
    root = images_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        # Two callers at once: the second waits, then finds the archives there.
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [planned for planned in plan if not planned.archive.exists()]
        if missing:
            _Builder(root, plan).build(missing)
    return result


# --- building ---------------------------------------------------------------------------

def _require_tool(name: str, why: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None)
    if found is None:
        raise ImageError(f"{name} is missing: install it ({why})")
    return found


class _Builder:
    """The builds of one `ensure_images` call, made while it holds the lock."""

    def __init__(self, root: Path, plan: list[_Planned]) -> None:
        if os.geteuid() != 0:
            raise ImageError("building the images needs root (buildah and debootstrap); "
                             "run as root once, later calls only read the archives")
        self.root = root
        self.plan = {planned.image.name: planned for planned in plan}
        self.buildah = _require_tool("buildah", "Debian: apt-get install buildah")
        for name in ("storage", "run", "tmp", "work", "logs", "archives"):
            (root / name).mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TMPDIR": str(root / "tmp"), "LC_ALL": "C.UTF-8"}
        self.driver = self._storage_driver()

    # buildah's storage: its own, never /var/lib/containers.
    def _storage_driver(self) -> str:
        """overlay where the kernel lets this process mount it (the case here: root with
        every capability, overlayfs on ext4), else vfs (full copies: slower and larger,
        but works anywhere). buildah's overlay driver makes a test mount when it starts,
        so a first command in a scratch storage tells. The choice is kept: a storage
        cannot change driver."""
        chosen = self.root / "storage-driver"
        if chosen.exists():
            return chosen.read_text().strip()
        probe = self.root / "tmp" / "overlay-probe"
        shutil.rmtree(probe, ignore_errors=True)
        result = subprocess.run(
            [self.buildah, "--root", str(probe / "storage"), "--runroot", str(probe / "run"),
             "--storage-driver", "overlay", "images"],
            capture_output=True, text=True, env=self.env, check=False)
        shutil.rmtree(probe, ignore_errors=True)
        driver = "overlay" if result.returncode == 0 else "vfs"
        if driver == "vfs":
            _log(f"overlay storage unavailable ({_last_line(result.stderr)}); using vfs")
        chosen.write_text(f"{driver}\n")
        return driver

    def buildah_cmd(self, *args: str) -> list[str]:
        return [self.buildah, "--root", str(self.root / "storage"),
                "--runroot", str(self.root / "run"), "--storage-driver", self.driver, *args]

    def run(self, command: list[str], log: Path, what: str, cwd: Path | None = None) -> None:
        with log.open("a") as out:
            out.write(f"$ {shlex.join(command)}\n")
            out.flush()
            result = subprocess.run(command, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            for line in log.read_text(errors="replace").splitlines()[-15:]:
                _log(f"  {line}")
            raise ImageError(f"{what} failed (exit {result.returncode}); full log: {log}")

    def capture(self, command: list[str]) -> str | None:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True,
                                check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def log_path(self, planned: _Planned) -> Path:
        return self.root / "logs" / f"{planned.image.slug}.log"

    def work_dir(self, planned: _Planned) -> Path:
        path = self.root / "work" / f"{planned.image.slug}-{planned.key}"
        _remove_tree(path)
        path.mkdir(parents=True)
        return path

    def bud(self, planned: _Planned, containerfile: Path, context: Path, log: Path,
            *extra: str) -> None:
        # chroot isolation: the OCI runtime (crun) refuses this machine's hybrid cgroup
        # layout, and RUN steps need no more isolation than a chroot to build an image.
        # The network is the host's, so apt, pip and Maven's proxy settings apply.
        self.run(self.buildah_cmd(
            "bud", "--isolation", "chroot", "--pull=never", "--layers", "--force-rm",
            "--label", f"{INPUTS_LABEL}={planned.key}", *extra,
            "-f", str(containerfile), "-t", planned.image.name, str(context)),
            log, f"buildah bud {planned.image.name}")

    def ensure_parent(self, planned: _Planned) -> None:
        """The parent image in storage, as built from the inputs the digest covers."""
        name = planned.image.parent
        if name is None:
            return
        parent = self.plan[name]
        if self.label(name) == parent.key:
            return
        _log(f"loading {name} from {parent.archive}")
        self.run(self.buildah_cmd("pull", "--quiet", f"docker-archive:{parent.archive}"),
                 self.log_path(parent), f"loading {name}")
        if self.label(name) != parent.key:
            raise ImageError(f"{parent.archive} does not hold {name} as expected")

    def label(self, name: str) -> str | None:
        return self.capture(self.buildah_cmd(
            "inspect", "--type", "image", "--format",
            f'{{{{index .OCIv1.Config.Labels "{INPUTS_LABEL}"}}}}', name))

    def archive(self, planned: _Planned, log: Path) -> None:
        target = planned.archive
        partial = target.with_name(f".{target.name}.partial")
        partial.unlink(missing_ok=True)
        self.run(self.buildah_cmd("push", "--quiet", planned.image.name,
                                  f"docker-archive:{partial}:{planned.image.name}"),
                 log, f"writing the archive of {planned.image.name}")
        partial.replace(target)
        for old in target.parent.glob(f"{planned.image.slug}-*.tar"):
            if old != target:
                old.unlink(missing_ok=True)

    def build(self, missing: list[_Planned]) -> None:
        start = time.monotonic()
        _log(f"building {len(missing)} of {len(self.plan)} images into {self.root} "
             "(a first build takes about two minutes; later calls reuse the archives)")
        for index, planned in enumerate(missing, 1):
            began = time.monotonic()
            _log(f"[{index}/{len(missing)}] {planned.image.name} ...")
            log = self.log_path(planned)
            log.write_text("")
            self.ensure_parent(planned)
            planned.image.build(self, planned)
            self.archive(planned, log)
            _remove_tree(self.root / "work" / f"{planned.image.slug}-{planned.key}")
            now = time.monotonic()
            size = planned.archive.stat().st_size / 1e6
            _log(f"[{index}/{len(missing)}] {planned.image.name} built in "
                 f"{now - began:.0f} s ({size:.0f} MB archive; elapsed {now - start:.0f} s)")
        _log(f"{len(missing)} images built in {time.monotonic() - start:.0f} s")


def _build_minbase(builder: _Builder, planned: _Planned) -> None:
    log = builder.log_path(planned)
    work = builder.work_dir(planned)
    rootfs = work / "rootfs"
    debootstrap = _require_tool("debootstrap", "Debian: apt-get install debootstrap")
    began = time.monotonic()
    try:
        builder.run([debootstrap, *DEBOOTSTRAP_ARGS, str(rootfs), DEBIAN_MIRROR], log,
                    "debootstrap")
    finally:
        _unmount_below(rootfs)
    _log(f"  debootstrap {' '.join(DEBOOTSTRAP_ARGS)} took {time.monotonic() - began:.0f} s")
    for pattern in MINBASE_REMOVE:
        for path in rootfs.glob(pattern):
            _remove_tree(path)
    for name in MINBASE_EMPTY:
        (rootfs / name).unlink(missing_ok=True)
        (rootfs / name).write_bytes(b"")
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    shutil.copyfile(repo_root() / "images" / "minbase" / "debian.sources",
                    rootfs / "etc/apt/sources.list.d/debian.sources")
    tarball = work / "rootfs.tar"
    builder.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
                 "--sort=name", "-C", str(rootfs), "-cf", str(tarball), "."], log,
                "packing the minbase tree")
    container = f"leader-sidecar-{planned.image.slug}-{planned.key}"
    subprocess.run(builder.buildah_cmd("rm", container), env=builder.env,
                   capture_output=True, check=False)
    builder.run(builder.buildah_cmd("from", "--pull=never", "--name", container, "scratch"),
                log, "buildah from scratch")
    try:
        # A local tar archive given to `buildah add` is unpacked as it is: owners, modes
        # and extended attributes kept.
        builder.run(builder.buildah_cmd("add", container, str(tarball), "/"), log,
                    "buildah add")
        config = ["config", "--cmd", "bash", "--label", f"{INPUTS_LABEL}={planned.key}"]
        for env in MINBASE_ENV:
            config += ["--env", env]
        builder.run(builder.buildah_cmd(*config, container), log, "buildah config")
        builder.run(builder.buildah_cmd("commit", "--quiet", container, planned.image.name), log,
                    "buildah commit")
    finally:
        subprocess.run(builder.buildah_cmd("rm", container), env=builder.env,
                       capture_output=True, check=False)


def _build_python(builder: _Builder, planned: _Planned) -> None:
    log = builder.log_path(planned)
    context = builder.work_dir(planned)
    shutil.copyfile(repo_root() / "images" / "python" / "Containerfile",
                    context / "Containerfile")
    # One certificate a file: update-ca-certificates adds each to the bundle and to the
    # hashed directory (a file of several would reach the bundle only).
    certificates = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                              HOST_CA_BUNDLE.read_text(), re.DOTALL)
    if not certificates:
        raise ImageError(f"no certificate in {HOST_CA_BUNDLE}")
    (context / "build-host-ca").mkdir()
    for index, certificate in enumerate(certificates):
        (context / "build-host-ca" / f"build-host-{index:03}.crt").write_text(f"{certificate}\n")
    builder.bud(planned, context / "Containerfile", context, log)


def _build_project(builder: _Builder, planned: _Planned) -> None:
    log = builder.log_path(planned)
    src = repo_root()
    builder.bud(planned, src / "Dockerfile", src, log, "--build-arg", f"PYTHON_IMAGE={PYTHON}")


def _build_zookeeper(builder: _Builder, planned: _Planned) -> None:
    log = builder.log_path(planned)
    work = builder.work_dir(planned)
    context = work / "context"
    recipe = repo_root() / "images" / "zookeeper"
    shutil.copytree(recipe, context)
    (context / "pom.xml").unlink()
    for script in context.glob("*.sh"):  # executable whatever the checkout kept
        script.chmod(0o755)
    maven = work / "maven"
    maven.mkdir()
    shutil.copyfile(recipe / "pom.xml", maven / "pom.xml")
    mvn = _require_tool("mvn", "Debian: apt-get install maven")
    began = time.monotonic()
    builder.run([mvn, "-B", "-q", "-f", str(maven / "pom.xml"),
                 f"-Dmaven.repo.local={builder.root / 'maven-repo'}",
                 "dependency:copy-dependencies", f"-DoutputDirectory={context / 'lib'}"],
                log, "mvn dependency:copy-dependencies (ZooKeeper's jars)", cwd=maven)
    jars = sorted(path.name for path in (context / "lib").glob("*.jar"))
    _log(f"  {len(jars)} ZooKeeper jars from Maven in {time.monotonic() - began:.0f} s")
    builder.bud(planned, context / "Containerfile", context, log)


def _gomodcache() -> Path:
    explicit = os.environ.get("GOMODCACHE")
    if explicit:
        return Path(explicit)
    gopath = os.environ.get("GOPATH", "").split(os.pathsep)[0]
    return Path(gopath or Path.home() / "go") / "pkg" / "mod"


def _pause_source(builder: _Builder, log: Path) -> Path:
    relative = Path(f"{PAUSE_MODULE}@{PAUSE_MODULE_VERSION}") / PAUSE_SOURCE
    source = _gomodcache() / relative
    if source.exists():
        return source
    from sidecar.lab.cluster import binaries

    go = binaries.find_go()
    if go is None:
        raise ImageError(f"{source} is missing and Go is not there to download it")
    module = repo_root() / "tools" / "cluster"
    builder.run([go, "mod", "download", PAUSE_MODULE], log,
                f"go mod download {PAUSE_MODULE}", cwd=module)
    cache = builder.capture([go, "env", "GOMODCACHE"])
    source = Path(cache or _gomodcache()) / relative
    if not source.exists():
        raise ImageError(f"{source} is missing after go mod download in {module}")
    return source


def _build_pause(builder: _Builder, planned: _Planned) -> None:
    log = builder.log_path(planned)
    context = builder.work_dir(planned)
    source = _pause_source(builder, log)
    gcc = _require_tool("gcc", "Debian: apt-get install gcc libc6-dev")
    builder.run([gcc, *PAUSE_CFLAGS, "-o", str(context / "pause"), str(source)], log,
                "compiling pause.c")
    builder.run([_require_tool("strip", "Debian: apt-get install binutils"),
                 str(context / "pause")], log, "strip pause")
    shutil.copyfile(repo_root() / "images" / "pause" / "Containerfile",
                    context / "Containerfile")
    builder.bud(planned, context / "Containerfile", context, log)


def _build_coredns(binary: Path) -> Callable[[_Builder, _Planned], None]:
    def build(builder: _Builder, planned: _Planned) -> None:
        log = builder.log_path(planned)
        context = builder.work_dir(planned)
        shutil.copyfile(binary, context / "coredns")
        (context / "coredns").chmod(0o755)
        shutil.copyfile(repo_root() / "images" / "coredns" / "Containerfile",
                        context / "Containerfile")
        builder.bud(planned, context / "Containerfile", context, log)
    return build


# --- file system helpers ----------------------------------------------------------------

def _mounts_below(path: Path) -> Iterator[Path]:
    prefix = str(path.resolve()) if path.exists() else str(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            yield Path(point)


def _unmount_below(path: Path) -> None:
    """Undo what an interrupted debootstrap left mounted (/proc, /sys) in its tree."""
    for point in sorted(_mounts_below(path), key=lambda p: len(p.parts), reverse=True):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)


def _remove_tree(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    _unmount_below(path)
    if any(True for _ in _mounts_below(path)):
        raise ImageError(f"{path} still has file systems mounted in it; unmount them first")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


# --- command line -----------------------------------------------------------------------

class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m sidecar.lab.node.images",
                     description="Build the lab node's images (if missing) and print "
                                 "'<name> <archive>' for each.")
    parser.add_argument("--coredns", type=Path, required=True, metavar="PATH",
                        help="the CoreDNS binary to put into localhost/coredns")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if not args.coredns.is_file():
            raise _UsageError(f"--coredns {args.coredns}: no such file")
    except _UsageError as error:
        print(f"leader-sidecar: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    try:
        archives = ensure_images(args.coredns)
    except ImageError as error:
        print(f"leader-sidecar: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _log("interrupted: finished archives are kept, the rest build next time")
        return 130
    for name, archive in archives.items():
        print(f"{name} {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
