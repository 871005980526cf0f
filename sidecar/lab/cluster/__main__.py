"""`python -m sidecar.lab.cluster build|up|down|status`: the local control plane for people.

`up` builds the binaries if needed, starts the cluster (or finds it running) and prints
`export KUBECONFIG=<path>` as its last line; `down` stops it and removes what it made.
"""

from __future__ import annotations

import argparse
import sys
import time

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.control_plane import ClusterError, LocalCluster

DEFAULT_NAME = "leader-sidecar"


def default_cluster(name: str = DEFAULT_NAME, nodes: int = 3) -> LocalCluster:
    return LocalCluster(name, binaries.cache_root() / "kwok", nodes=nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecar.lab.cluster")
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(binaries.ensure_built())
            return 0
        if args.command in ("up", "status"):
            binaries.ensure_built()
        cluster = default_cluster(args.name, args.nodes)
        if args.command == "down":
            cluster.down()
            print(f"cluster {args.name} removed", file=sys.stderr)
            return 0
        if args.command == "status":
            state = "running" if cluster.running() else "not running"
            print(f"cluster {args.name}: {state}", file=sys.stderr)
            return 0 if state == "running" else 1
        if cluster.running():
            print(f"cluster {args.name} is already running", file=sys.stderr)
        else:
            started = time.monotonic()
            print(f"starting cluster {args.name} (etcd, kube-apiserver, "
                  "kube-controller-manager, kube-scheduler, kwok) ...", file=sys.stderr)
            cluster.up()
            print(f"cluster {args.name} is up in {time.monotonic() - started:.1f} s "
                  f"with {args.nodes} kwok nodes", file=sys.stderr)
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        return 0
    except (binaries.BuildError, ClusterError) as error:
        print(f"leader-sidecar: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
