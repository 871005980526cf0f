"""The docs/benchmarks.md section and plot of `bench/client_failover.py` (failover on a
real node as the leader Service's client sees it), beside the kwok figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = {
    "labelled": "another pod labelled leader",
    "endpoint": "EndpointSlice: only the new pod",
    "to_new": "client: first answer from the new leader",
    "only_new": "client: only the new leader from then on",
    "outage": "client: no answer from a leader",
}
TITLES = {"graceful": "kubectl delete pod", "crash": "SIGKILL of the sidecar container",
          "step-down": "step-down annotation", "zk-leader": "ZooKeeper leader pod deleted"}


def _ms(row: dict[str, Any] | None) -> str:
    if not row or not row.get("n"):
        return "-"
    return f"{row['median_ms']:.0f} ms ({row['p95_ms']:.0f} ms)"


def section(data: dict[str, Any], kwok: dict[str, Any] | None, plot_name: str) -> list[str]:
    lines = [
        "## Failover as a client of the leader Service sees it (real node)",
        "",
        "The chart with its defaults (its own three-server ZooKeeper ensemble with "
        "persistence, NetworkPolicies, zkAuth, the native sidecar) on the real node of "
        "`make cluster-up NODE=real`: kubelet, containerd, runc, kube-proxy (iptables "
        "mode, its default `minSyncPeriod` of 1 s), CoreDNS, images built here. A client "
        "pod sends `GET /` to the leader Service's ClusterIP every 10 ms, a new "
        "connection each time; the demo application answers with its pod's role, epoch "
        "and lease from the role files (`sidecar/lab/node/client.py`). Times run from "
        "the action as the API server recorded it (deletionTimestamp, annotation; for "
        "the SIGKILL, the signal). *No answer from a leader* adds up the time in which "
        "requests failed or were answered by a pod that said it was not the leader. "
        "*Two-leader answers* counts requests answered as leader (role leader, lease "
        "valid) by the old pod after the new leader had answered or been labelled (an "
        "upper bound: a run of equal answers that straddles that instant counts whole). "
        f"{data['rounds']} rounds per action, interleaved. Median (p95). "
        "(`bench/client_failover.py`)",
        "",
        "| action | " + " | ".join(COLUMNS.values())
        + " | failed requests | answered by a non-leader | two-leader answers | "
          "double labels |",
        "| --- |" + " ---: |" * (len(COLUMNS) + 4),
    ]
    for action, row in data["actions"].items():
        cells = [_ms(row.get(key)) for key in COLUMNS]
        lines.append(f"| {TITLES.get(action, action)} | " + " | ".join(cells)
                     + f" | {row['errors']} | {row['not_leader']} | {row['two_leaders']} | "
                     f"{row['doubles']} |")
    lines += [
        "",
        "Why the client lags the label: kube-proxy rewrites its rules at most once a "
        "second (`iptables.minSyncPeriod`, 1 s by default, as kind and kubeadm run it). "
        "A handover changes the leader Service's endpoints twice, in this order: the old "
        "pod's label goes (no endpoint), then the new pod's comes. The first change is "
        "synced at once; the second waits for the rest of that second. Meanwhile "
        "requests still reach the old pod, which answers that it is no longer the "
        "leader (*answered by a non-leader*), or find no endpoint and are refused "
        "(*failed*); none is answered as leader by two pods. After a SIGKILL the old "
        "pod's application answers as leader until its lease runs out, before the "
        "successor can be elected; the session timeout (the chart's 6 s, against 2 s "
        "in the kwok runs) sets the crash figures.",
    ]
    zk = data["actions"].get("zk-leader")
    if zk:
        lines += ["", f"Deleting the ZooKeeper leader's pod: the ensemble had three servers "
                  f"in a quorum again after {_ms(zk.get('quorum'))}; the application's "
                  f"leader moved in {zk['moved']} of {zk['rounds']} rounds. Its clients "
                  "lose the leader while the two servers left elect a new ensemble "
                  "leader: the sidecars' sessions are suspended, the leader's lease "
                  "runs out and its application answers that it is not the leader "
                  "until its session is back on the new quorum."]
    if kwok and "sizes" in kwok and "3" in kwok["sizes"]:
        lines += ["", "The same actions on kwok's pods (the pod runner plays the kubelet, "
                  "session timeout "
                  f"{kwok.get('session_timeout_s', 2):g} s; the table above), 3 pods:", "",
                  "| action | real node: labelled | kwok: labelled | real node: "
                  "EndpointSlice | kwok: EndpointSlice |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for action, row in data["actions"].items():
            other = kwok["sizes"]["3"].get(action)
            if other:
                lines.append(f"| {TITLES[action]} | {_ms(row.get('labelled'))} | "
                             f"{_ms(other['labelled'])} | {_ms(row.get('endpoint'))} | "
                             f"{_ms(other['endpoint'])} |")
    lines += ["", f"![failover as the client sees it]({plot_name})", ""]
    return lines


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actions = [a for a in data["actions"] if data["actions"][a].get("rounds")]
    figure, axes = plt.subplots(1, len(actions), figsize=(4.6 * len(actions), 4.0),
                                squeeze=False)
    for axis, action in zip(axes[0], actions, strict=True):
        row = data["actions"][action]
        for key, style in (("labelled", "-"), ("endpoint", ":"), ("to_new", "--"),
                           ("only_new", "-."), ("quorum", "-")):
            samples = sorted((row.get(key) or {}).get("samples_ms") or [])
            if not samples or (action == "zk-leader" and key == "to_new"):  # no new leader
                continue
            fraction = [(i + 1) / len(samples) for i in range(len(samples))]
            axis.step([s / 1000 for s in samples], fraction, style, where="post",
                      label=f"{COLUMNS.get(key, 'ZooKeeper quorum again')} "
                            f"(median {row[key]['median_ms'] / 1000:.2f} s)")
        axis.set_title(TITLES.get(action, action), fontsize=10)
        axis.set_xlabel("seconds from the action's record")
        axis.set_ylabel("fraction of rounds")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6, loc="lower right")
    figure.suptitle("the chart on a real node, seen by a client of the leader Service "
                    f"({data['rounds']} rounds per action)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
