"""`python -m sidecar.lab.cluster build|up|down|status|load`: the local control plane for
people.

`up` builds the binaries if needed, starts the cluster (or finds it running) and prints
`export KUBECONFIG=<path>` as its last line; `down` stops it and removes what it made.
`--node real` gives the cluster one real node (kubelet, containerd, runc) instead of kwok's;
`build --node real` builds the node's binaries and images without starting anything.
`load` (a running real node) builds the images anew if their sources changed, imports them
into the node's containerd with a tag per build, and prints the chart values that use them
(`key=value` lines for `helm --set`): what `docker build` and `kind load` do for kind.
`kill --namespace NS --pod P [--container C]` (a running real node) SIGKILLs a container's
main process, as a crash would (the kind flow's crash step on the real node).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.control_plane import ClusterError, LocalCluster
from sidecar.lab.node.images import ImageError

if TYPE_CHECKING:
    from sidecar.lab.node.cluster import RealNodeCluster

DEFAULT_NAME = "leader-sidecar"


def default_cluster(name: str = DEFAULT_NAME, nodes: int = 3,
                    node: str = "kwok") -> LocalCluster:
    workdir = binaries.cache_root() / "kwok"
    if node == "real":
        from sidecar.lab.node.cluster import RealNodeCluster
        return RealNodeCluster(name, workdir)
    return LocalCluster(name, workdir, nodes=nodes)


def build(node: str) -> None:
    print(binaries.ensure_built())
    if node == "real":
        from sidecar.lab.node.images import ensure_images
        node_bin = binaries.ensure_built(binaries.NODE)
        print(node_bin)
        for archive in ensure_images(node_bin / "coredns").values():
            print(archive)


def real_node_cluster(name: str, kubeconfig: Path | None) -> RealNodeCluster:
    """The running real-node cluster named, or the one whose kubeconfig is given."""
    from sidecar.lab.node.cluster import RealNodeCluster

    # A cluster's kubeconfig is <workdir>/clusters/<name>/kubeconfig.yaml.
    cluster = (default_cluster(name, node="real") if kubeconfig is None else
               RealNodeCluster(kubeconfig.parent.name, kubeconfig.parent.parent.parent))
    assert isinstance(cluster, RealNodeCluster)
    if not (cluster.node().dir / "pids" / "kubelet.pid").exists():
        where = kubeconfig or f"cluster {name}"
        raise ClusterError(f"no real node runs for {where}: "
                           "start one with make cluster-up NODE=real")
    return cluster


def load(name: str, kubeconfig: Path | None) -> None:
    from sidecar.lab.node.cluster import CHART_VALUES
    from sidecar.lab.node.images import ensure_images

    cluster = real_node_cluster(name, kubeconfig)
    node_bin = binaries.ensure_built(binaries.NODE)
    built = cluster.node().load_images(ensure_images(node_bin / "coredns"))
    for prefix, image in (("image", CHART_VALUES["image"]),
                          ("zookeeper.image", CHART_VALUES["zookeeper"]["image"])):
        repository, tag = built[f"{image['repository']}:{image['tag']}"].rsplit(":", 1)
        print(f"{prefix}.repository={repository}\n{prefix}.tag={tag}\n"
              f"{prefix}.pullPolicy={image['pullPolicy']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecar.lab.cluster")
    parser.add_argument("command", choices=["build", "up", "down", "status", "load", "kill"])
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--nodes", type=int, default=3, help="kwok nodes")
    parser.add_argument("--kubeconfig", type=Path,
                        help="load, kill: the real node's cluster by its kubeconfig")
    parser.add_argument("--namespace", default="default", help="kill: the pod's namespace")
    parser.add_argument("--pod", help="kill: the pod")
    parser.add_argument("--container", default="leader-sidecar", help="kill: the container")
    parser.add_argument("--node", choices=["kwok", "real"], default="kwok",
                        help="kwok's nodes (run nothing) or one real node (runs containers)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.node)
            return 0
        if args.command == "load":
            load(args.name, args.kubeconfig and args.kubeconfig.resolve())
            return 0
        if args.command == "kill":
            if not args.pod:
                parser.error("kill needs --pod")
            real_node_cluster(args.name, args.kubeconfig and args.kubeconfig.resolve()
                              ).signal_container(args.namespace, args.pod, args.container,
                                                 signal.SIGKILL)
            return 0
        if args.command in ("up", "status"):
            binaries.ensure_built()
        # `down` takes a real node down too, whichever way the cluster was started.
        node = "real" if args.command == "down" else args.node
        cluster = default_cluster(args.name, args.nodes, node)
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
            nodes = "one real node" if args.node == "real" else f"{args.nodes} kwok nodes"
            print(f"cluster {args.name} is up in {time.monotonic() - started:.1f} s "
                  f"with {nodes}", file=sys.stderr)
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        return 0
    except (binaries.BuildError, ClusterError, ImageError) as error:
        print(f"leader-sidecar: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
