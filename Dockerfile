# leader-sidecar image: the sidecar (`leader-sidecar run`), the demo application
# (`leader-sidecar demo-app`) and the chart's test pods all run from it.
#
# Build:  docker build -t leader-sidecar:dev .
# Needs BuildKit: the runtime stage installs the wheels through `RUN --mount` (a bind mount
# of the build stage, so that no layer keeps them), which the legacy builder rejects ("the
# --mount option requires BuildKit"). Docker >= 23 and Docker Desktop use BuildKit by
# default; an older Docker needs DOCKER_BUILDKIT=1 (scripts/kind-up.sh sets it), Podman
# and Buildah support the flag too.
# The runtime stage has no build tools and no pip cache, runs as a numeric non-root user
# (so that Kubernetes can verify runAsNonRoot) and needs no writable root filesystem.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the project's wheel plus wheels of all its dependencies -----------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The dependencies come from requirements/image.lock, pinned with the hashes of every file
# (made by `uv pip compile --universal --generate-hashes` from pyproject.toml's
# dependencies plus the build backend, requirements/image-build.in): a rebuild gets the
# same files, and this layer is reused while only the sidecar's source changes.
COPY requirements/image.lock ./requirements/
RUN python -m pip wheel --no-cache-dir --require-hashes --no-deps --wheel-dir /wheels \
        --requirement requirements/image.lock
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
# Offline: the isolated build environment gets the locked setuptools and wheel from /wheels.
RUN python -m pip wheel --no-cache-dir --no-deps --no-index --find-links /wheels \
        --wheel-dir /wheels . \
    && sha256sum /wheels/*.whl > /wheels.sha256

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# No .pyc writes at run time (the root filesystem is read-only; pip compiled them at
# install), and logs reach `kubectl logs` at once.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 sidecar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sidecar
# The checksums of the wheels that the install below draws on, kept as a record. Copying
# them also makes Buildah and Podman rerun the install when the build stage made other
# wheels: their layer cache ignores what RUN --mount brings in (containers/buildah#4522,
# #6609).
COPY --from=build /wheels.sha256 /usr/local/share/leader-sidecar/wheels.sha256
# Install from the built wheels only, offline, without keeping them in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links /wheels \
        /wheels/leader_sidecar-*.whl \
    && leader-sidecar --help >/dev/null
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["leader-sidecar"]
CMD ["run"]
