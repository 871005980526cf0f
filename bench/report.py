"""Write `docs/benchmarks.md` and `docs/failover-latency.png` from `bench/results/*.json`.

Run by `bench/run_all.py` after the benchmarks; alone: `python bench/report.py`.
A benchmark whose JSON is missing is left out of the report with a note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
PLOT = DOCS / "failover-latency.png"
CLUSTER_PLOT = DOCS / "cluster-failover.png"
CLIENT_PLOT = DOCS / "client-failover.png"

import client_report  # noqa: E402

from sidecar.lab.cluster.failover import MEASURES as CLUSTER_MEASURES  # noqa: E402
from sidecar.lab.cluster.timeline import PARTS as TIMELINE_PARTS  # noqa: E402


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if len(sys.argv) > 1:  # `report.py RESULTS_DIR`: another results directory (smoke runs)
        path = Path(sys.argv[1]) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _style(axis: Any, title: str, xlabel: str, legend_at: str) -> None:
    """The look every distribution plot shares (an empirical CDF per line)."""
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("fraction of rounds")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc=legend_at)


def _cdf(axis: Any, samples: list[float], **style: Any) -> None:
    ordered = sorted(samples)
    fraction = [(i + 1) / len(ordered) for i in range(len(ordered))]
    axis.step(ordered, fraction, where="post", **style)


def plot(failover: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(fs, "graceful") for fs in failover["filesystems"]]
    panels.append((next(iter(failover["filesystems"])), "crash"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2))
    colours = {"leader-sidecar": "#1f77b4", "kazoo-recipe": "#ff7f0e"}
    for axis, (filesystem, kind) in zip(axes, panels, strict=True):
        for name, data in failover["filesystems"][filesystem]["implementations"].items():
            samples = data[kind].get("samples_ms", [])
            if samples:
                _cdf(axis, samples, color=colours.get(name),
                     label=f"{name} (median {data[kind]['median_ms']:.1f} ms, n={len(samples)})")
        if kind == "crash":
            axis.axvline(failover["session_timeout_s"] * 1000, color="grey", linestyle="--",
                         linewidth=1, label="session timeout")
        title = "graceful (SIGTERM)" if kind == "graceful" else "crash (SIGKILL)"
        _style(axis, f"{title}, role directory on {filesystem}",
               "signal to successor's role file saying leader (ms)", legend_at="lower right")
    figure.suptitle(
        f"{failover['candidates']} candidate processes, 3-server ZooKeeper on loopback, "
        f"session timeout {failover['session_timeout_s']:g} s", fontsize=10)
    figure.tight_layout()
    DOCS.mkdir(exist_ok=True)
    figure.savefig(PLOT, dpi=110)
    plt.close(figure)


def plot_cluster(data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(data["sizes"])
    figure, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for axis, size in zip(axes[0], sizes, strict=True):
        for action, row in data["sizes"][size].items():
            if action == "crash":
                continue  # seconds, not milliseconds: in the table
            for key, style in (("labelled", "-"), ("endpoint", ":")):
                samples = sorted(row[key]["samples_ms"])
                fraction = [(i + 1) / len(samples) for i in range(len(samples))]
                axis.step(samples, fraction, style, where="post",
                          label=f"{action}: {CLUSTER_MEASURES[key]} "
                                f"(median {row[key]['median_ms']:.0f} ms)")
        # A rare slow EndpointSlice update (about 1.1 s, the controller's retry) would
        # squeeze every curve into a corner: the axis ends past the largest p95.
        limit = 1.3 * max(row[key]["p95_ms"] for action, row in data["sizes"][size].items()
                          if action != "crash" for key in ("labelled", "endpoint"))
        axis.set_xlim(0, limit)
        _style(axis, f"{size} pods, {data['rounds']} rounds per action",
               "ms from the action's record in the API server (larger: in the table)",
               legend_at="lower right")
    figure.suptitle("chart on the local control plane (real kube-apiserver, watched; "
                    f"session timeout {data['session_timeout_s']:g} s)", fontsize=10)
    figure.tight_layout()
    DOCS.mkdir(exist_ok=True)
    figure.savefig(CLUSTER_PLOT, dpi=110)
    plt.close(figure)


def _ms(row: dict[str, Any]) -> str:
    return f"{row['median_ms']:.0f} ms ({row['p95_ms']:.0f} ms)"


def cluster_failover_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Failover as a user sees it (real kube-apiserver, watched)",
        "",
        "The chart helm-installed on the local control plane (etcd, kube-apiserver, "
        "controller-manager, scheduler, kwok nodes; `make cluster-up`), its sidecars run by "
        "the pod runner on a real three-server ensemble, session timeout "
        f"{data['session_timeout_s']:g} s. Each round acts on the pod labelled leader: "
        "*graceful* is `kubectl delete pod` (the sidecar leaves on its watch; the runner "
        "stops the native sidecar after the application's `sleep` hook, as the kubelet "
        "does), *step-down* is `kubectl annotate pod <leader> leader-election/step-down=now`, "
        "*crash* is SIGKILL of the leader's sidecar. A watch of the pods and of the leader "
        "Service's EndpointSlices (`sidecar/lab/cluster/watch.py`) records every state the "
        "API server held; times run from the action as the API server recorded it (the "
        "watch event with the deletionTimestamp or the annotation; for a crash, the "
        "signal), not from kubectl's start-up. *Double labels* counts every instant at "
        "which two pods carried `role=leader`. Median (p95). (`bench/cluster_failover.py`)",
        "",
        "| pods | action | rounds | double labels | another pod labelled leader | leader "
        "Service's EndpointSlice on it | no other pod labelled leader | no pod labelled "
        "leader |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, actions in data["sizes"].items():
        for action, row in actions.items():
            lines.append(f"| {size} | {action} | {row['rounds']} | "
                         f"{row['double_label_instants']} | {_ms(row['labelled'])} | "
                         f"{_ms(row['endpoint'])} | {_ms(row['only'])} | "
                         f"{_ms(row['unlabelled'])} |")
    lines += [
        "",
        "Targets for the graceful actions: median 50 ms and p95 100 ms to the new label, "
        "median 100 ms to the EndpointSlice, no double label. *No pod labelled leader* is "
        "the price of the order: the old label goes before the new one comes, and the "
        "leader Service has no endpoint in between.",
        "",
        "Where the time goes, from the sidecars' own log lines set beside the watch "
        "(`sidecar/lab/cluster/timeline.py`), median (p95). The preStop hook's `leader-sidecar "
        "leave` is not on the way: the kubelet runs a native sidecar's hook after the "
        "application has stopped, two seconds later; the sidecar's own watch of its pod has "
        "left long before.",
        "",
        "| pods | action | " + " | ".join(TIMELINE_PARTS.values()) + " |",
        "| ---: | --- |" + " ---: |" * len(TIMELINE_PARTS),
    ]
    for size, actions in data["sizes"].items():
        for action, row in actions.items():
            parts = row.get("parts", {})
            cells = [_ms(parts[part]) if part in parts else "-" for part in TIMELINE_PARTS]
            lines.append(f"| {size} | {action} | " + " | ".join(cells) + " |")
    groups = sorted({group for actions in data["sizes"].values() for row in actions.values()
                     for group in row.get("cpu_ms", {})})
    if groups:
        lines += ["", "The machine's two cores during a round (mean CPU ms of each kind of "
                  "process, from the action until the round's last measure; /proc's 10 ms "
                  "ticks): a handover's few API writes meet a burst of work in every "
                  "watcher of the pods.", "",
                  "| pods | action | " + " | ".join(groups) + " |",
                  "| ---: | --- |" + " ---: |" * len(groups)]
        for size, actions in data["sizes"].items():
            for action, row in actions.items():
                cpu = row.get("cpu_ms", {})
                lines.append(f"| {size} | {action} | "
                             + " | ".join(f"{cpu.get(group, 0):.0f}" for group in groups) + " |")
    crashes = [(size, actions["crash"]) for size, actions in data["sizes"].items()
               if "crash" in actions]
    if crashes:
        lines += ["", "After a crash, the time in which no pod was labelled leader (the "
                  "restarted sidecar says `unknown` until the old session expires) and the "
                  "rounds in which the stale label went before the new one came:", "",
                  "| pods | rounds | no pod labelled leader | stale label cleared first |",
                  "| ---: | ---: | ---: | ---: |"]
        for size, row in crashes:
            lines.append(f"| {size} | {row['rounds']} | {_ms(row['unlabelled'])} | "
                         f"{row['cleared_before_labelled']} of {row['rounds']} |")
    lines += ["", "![failover on the local control plane](cluster-failover.png)", "",
              f"Machine: {machine_text(data['machine'])}.", ""]
    return lines


def client_failover_section(data: dict[str, Any]) -> list[str]:
    client_report.plot(data, CLIENT_PLOT)
    return client_report.section(data, load("cluster_failover"), CLIENT_PLOT.name)


def exclusive_labels_section(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The same benchmark before the leader label was made exclusive (the leaving
    leader's own patch raced the successor's) and now."""
    lines = [
        "## Leader labels before and after they were made exclusive",
        "",
        "*Before*: the leaving leader's patch to `unknown` raced the successor's to "
        "`leader` (`bench/baseline/before-exclusive-labels-cluster-failover.json`, same "
        "benchmark and machine, 5 pods). *After*: the successor clears every other leader "
        "label before it labels itself, and a leaving leader's own label is off before "
        "its znode goes (`sidecar/labelgate.py`). Median (p95) from the action's record. "
        "(In the *before* run the pod runner still ran the native sidecar's preStop hook at "
        "the deletion, not after the application as the kubelet does: one process start-up "
        "more in the graceful rounds' window.)",
        "",
        "| pods | action | before: double labels | before: new label | after: double "
        "labels | after: new label |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for size, actions in before["sizes"].items():
        for action, old in actions.items():
            new = after["sizes"].get(size, {}).get(action)
            if new is None:
                continue
            lines.append(
                f"| {size} | {action} | {old['double_label_instants']} in {old['rounds']} | "
                f"{_ms(old['labelled'])} | {new['double_label_instants']} in "
                f"{new['rounds']} | {_ms(new['labelled'])} |")
    return [*lines, ""]


def machine_text(info: dict[str, Any]) -> str:
    load = info.get("load_average_at_start") or [0, 0, 0]
    return (f"{info.get('cpus')} CPUs ({info.get('cpu_model') or 'unknown model'}), "
            f"{info.get('memory_gb')} GB, {info.get('platform')}, Python {info.get('python')}, "
            f"ZooKeeper {str(info.get('zookeeper', '?')).split('-')[0]}; "
            f"load average at start {load[0]:.2f}")


def graceful_ratios(found: dict[str, Any]) -> dict[str, float] | None:
    ours = found["implementations"].get("leader-sidecar", {}).get("graceful", {})
    theirs = found["implementations"].get("kazoo-recipe", {}).get("graceful", {})
    if not ours.get("n") or not theirs.get("n"):
        return None
    return {key: ours[f"{key}_ms"] / theirs[f"{key}_ms"] for key in ("median", "p95")} | {
        "ours": ours["median_ms"], "theirs": theirs["median_ms"]}


def failover_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Failover latency",
        "",
        f"{data['candidates']} candidate processes of each implementation on one 3-server "
        f"ensemble, session timeout {data['session_timeout_s']:g} s (tickTime "
        f"{data.get('tick_ms', 200)} ms); both groups run at once and the rounds alternate "
        "between them, so a busy moment of the machine falls on both alike. Time from "
        "the signal to the leader until another candidate's role file says `leader` (both "
        "write it with the same atomic, fsynced rename); for leader-sidecar also until "
        "every survivor's status.json names the new leader. The stopped candidate is "
        "restarted and rejoins at the back after each round. Graceful rounds with the role "
        "directories on tmpfs (as the chart mounts them: emptyDir, medium Memory) and on "
        "disk; crash rounds on the first. The ZooKeeper servers keep their data on disk in "
        "every run. (`bench/failover.py`)",
        "",
        "| role directory on | graceful: leader-sidecar / kazoo-recipe, median | p95 |",
        "| --- | ---: | ---: |",
    ]
    for filesystem, found in data["filesystems"].items():
        ratio = graceful_ratios(found)
        if ratio:
            lines.append(f"| {filesystem} ({found['type']}) | {ratio['median']:.2f} "
                         f"({ratio['ours']:.1f} ms / {ratio['theirs']:.1f} ms) | "
                         f"{ratio['p95']:.2f} |")
    lines += [
        "",
        "| role directory on | implementation | failover | rounds | median | p95 | p99 | max |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for filesystem, found in data["filesystems"].items():
        for name, row in found["implementations"].items():
            for kind, label in (("graceful", "graceful (SIGTERM)"), ("crash", "crash (SIGKILL)")):
                r = row[kind]
                if r.get("n"):
                    lines.append(
                        f"| {filesystem} | {name} | {label} | {r['n']} | {r['median_ms']:.1f} ms"
                        f" | {r['p95_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['max_ms']:.1f} ms |")
    lines += ["", "| role directory on | implementation | first leader after a cold start "
              "(median, process start-up included) | CPU the first leader used until then "
              "(median) | every candidate decided | every "
              "follower names the new leader (graceful, median / p95) | two unexpired "
              "leases at once |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for filesystem, found in data["filesystems"].items():
        for name, row in found["implementations"].items():
            decided = ("n/a (followers say so before they connect)" if name == "kazoo-recipe"
                       else f"{row['all_decided']['median_ms']:.0f} ms")
            cpu = (f"{row['leader_cpu_ms']['median_ms']:.0f} ms" if "leader_cpu_ms" in row
                   else "n/a")
            know = row.get("followers_know")
            known = ("n/a (the recipe names no leader)" if know is None
                     else f"{know['median_ms']:.1f} ms / {know['p95_ms']:.1f} ms")
            lines.append(f"| {filesystem} | {name} | {row['first_leader']['median_ms']:.0f} ms "
                         f"(of {row['first_leader']['n']}) | {cpu} | {decided} | {known} | "
                         f"{row.get('two_leader_instants', 'n/a (no lease)')} |")
    lines += ["", f"![failover latency distributions]({PLOT.name})", "",
              f"Machine: {machine_text(data['machine'])}.", ""]
    return lines


def herd_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Herd effect, and how followers learn the new leader",
        "",
        f"One graceful leader change, mean of {data['rounds']} per row; in-process "
        "candidates, each with its own ZooKeeper session (see `bench/inproc.py` for why), "
        f"session timeout {data['session_timeout_s']:g} s, all on one ensemble in one run. "
        "*Woken*: survivors that received a notification from the election's znodes (the "
        "herd). *Record reads*: leader-sidecar's followers notified of the leader record "
        "(each then reads it once). *Requests* and *bytes*: what the survivors sent and "
        "received in one session timeout after the change, minus the whole group's "
        "steady-state rate over the same time (*net*). *All know*: until every survivor "
        "names the new leader (the recipe tells a candidate only whether it leads itself). "
        "(`bench/herd.py`)",
        "",
        "| implementation | N | woken | record reads | net requests | net bytes | "
        "steady requests/s | failover median | all know (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += _herd_rows(data["implementations"])
    return [*lines, ""]


def _herd_rows(implementations: dict[str, Any], only: str | None = None) -> list[str]:
    rows = []
    sizes = sorted({int(n) for found in implementations.values() for n in found})
    for size in sizes:
        for name, found in implementations.items():
            r = found.get(str(size))
            if r is None or (only and name != only):
                continue
            known = r.get("followers_know_median_ms")
            rows.append(
                f"| {name} | {size} | {r['woken_per_change']:.1f} | "
                f"{r.get('record_events_per_change', 0.0):.1f} | "
                f"{r['requests_net_per_change']:.1f} | {r.get('bytes_net_per_change', 0):.0f} | "
                f"{r['steady_requests_per_s']:.1f} | {r['failover_median_ms']:.1f} ms | "
                f"{'n/a' if known is None else f'{known:.1f} ms'} |")
    return rows


def before_after_section(baseline: dict[str, Any], herd: dict[str, Any] | None) -> list[str]:
    """The same benchmarks on the code before the heir's anchor and the leader record."""
    lines = [
        "## Before and after: the heir's anchor and the leader record",
        "",
        f"*Before*: {baseline['description']} (`bench/baseline/before-anchor.json`, kept "
        "in the repository). *After*: this run.",
        "",
        "| implementation | N | woken | record reads | net requests | net bytes | "
        "steady requests/s | failover median | all know (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [row.replace("| leader-sidecar |", "| leader-sidecar, before |")
              for row in _herd_rows(baseline["herd"]["implementations"], "leader-sidecar")]
    if herd is not None:
        lines += [row.replace("| leader-sidecar |", "| leader-sidecar, after |")
                  for row in _herd_rows(herd["implementations"], "leader-sidecar")]
    lines += ["", "| measure | before | after |", "| --- | ---: | ---: |"]
    for label, before, after in baseline_rows(baseline):
        lines.append(f"| {label} | {before} | {after} |")
    return [*lines, ""]


def baseline_rows(baseline: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    after_failover, after_idle = load("failover"), load("idle")
    for filesystem, before in baseline.get("failover", {}).items():
        after = None
        if after_failover:
            found = after_failover["filesystems"].get(filesystem)
            after = graceful_ratios(found) if found else None
        rows.append((
            f"graceful failover, role directory on {filesystem}: median (ratio to the recipe)",
            f"{before['ours']:.1f} ms ({before['median']:.2f})",
            "n/a" if after is None else f"{after['ours']:.1f} ms ({after['median']:.2f})",
        ))
    for name, before_mb in baseline.get("idle_rss_mb", {}).items():
        after_mb = (after_idle or {}).get("sidecars", {}).get(name, {}).get("rss_mb_median")
        rows.append((f"idle resident memory, {name}", f"{before_mb:.1f} MB",
                     "n/a" if after_mb is None else f"{after_mb:.1f} MB"))
    return rows


def scale_section(data: dict[str, Any]) -> list[str]:
    cold, idle, steady = data["cold_start"], data["idle_servers"], data["steady_servers"]
    n = data["candidates"]
    lines = [
        "## Scale",
        "",
        f"{n} leader-sidecar candidates on one 3-server ensemble, session timeout "
        f"{data['session_timeout_s']:g} s. Cold start and graceful failover: {n} in-process "
        "candidates started at once. Crash: the first candidates in the queue are processes "
        f"that get SIGKILL, the rest of the {n} are in-process. (`bench/scale.py`)",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| first leader after a cold start of {n} | {cold['first_leader_ms']:.0f} ms |",
        f"| every candidate has a verdict | {cold['all_verdicts_ms']:.0f} ms |",
        f"| (starting the {n} in-process candidates one by one took) | "
        f"{cold['start_calls_ms']:.0f} ms |",
    ]
    for kind in ("graceful", "crash"):
        r = data[kind]
        lines.append(f"| {kind} failover, median of {r['n']} (max) | {r['median_ms']:.1f} ms "
                     f"({r['max_ms']:.1f} ms) |")
    lines += ["", f"| ZooKeeper, 3 servers together | idle | with {n} candidates |",
              "| --- | ---: | ---: |"]
    for key, label in (("packets_received_per_s", "packets received/s"),
                       ("packets_sent_per_s", "packets sent/s"),
                       ("servers_cpu_percent_of_a_core", "CPU, % of one core"),
                       ("watch_count", "watches"), ("connections", "connections"),
                       ("avg_latency_ms", "average request latency, ms")):
        lines.append(f"| {label} | {idle[key]:.1f} | {steady[key]:.1f} |")
    lines += [""]
    return lines


def idle_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Cost of one idle sidecar",
        "",
        f"One `leader-sidecar run` process, alone in its election (a leader renewing its "
        f"lease), session timeout {data['session_timeout_s']:g} s, over "
        f"{data['seconds']:g} s after a warm-up. With Kubernetes: publishing to a real "
        "kube-apiserver (local control plane) with the kopf operator watching the group's "
        "pods. (`bench/idle.py`)",
        "",
        "| sidecar | resident memory (median) | max | CPU, % of one core |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, r in data["sidecars"].items():
        lines.append(f"| {name} | {r['rss_mb_median']:.1f} MB | {r['rss_mb_max']:.1f} MB | "
                     f"{r['cpu_percent_of_a_core']:.2f} % |")
    return [*lines, ""]


def tls_section(data: dict[str, Any]) -> list[str]:
    modes = data["modes"]
    lines = [
        "## What TLS to ZooKeeper costs",
        "",
        f"Two real three-server ensembles on loopback, one plaintext and one serving clients "
        f"over TLS only (Netty's secureClientPort, client certificates required, as the "
        f"chart's ZooKeeper does by default), each with {data['candidates']} leader-sidecar "
        f"candidates with `--zk-auth`, session timeout {data['session_timeout_s']:g} s, role "
        "directories on tmpfs; the rounds alternate between the two. Handover: SIGTERM to "
        "the leader until another candidate's role file says `leader`; names: until every "
        "survivor's status.json names it. Idle: both groups at once over "
        f"{data['idle_seconds']:g} s, % of one core (a follower: the mean of the group's "
        "followers, the heir's anchor renewals included). (`bench/tls_cost.py`)",
        "",
        "| ZooKeeper clients over | graceful handover, median | p95 | followers name the "
        "new leader, median | first leader after a cold start, median | idle CPU: leader | "
        "follower | 3 ZooKeeper servers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, row in modes.items():
        cpu = row["idle_cpu_percent"]
        lines.append(
            f"| {mode} | {row['graceful']['median_ms']:.1f} ms | "
            f"{row['graceful']['p95_ms']:.1f} ms | {row['followers_know']['median_ms']:.1f} ms | "
            f"{row['first_leader']['median_ms']:.0f} ms (of {row['first_leader']['n']}) | "
            f"{cpu['leader']:.2f} % | {cpu['follower']:.2f} % | "
            f"{cpu['zookeeper, 3 servers']:.2f} % |"
        )
    return [*lines, "", f"Machine: {machine_text(data['machine'])}.", ""]


def safety_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Safety under faults",
        "",
        f"3 candidate processes, session timeout {data['session_timeout_s']:g} s, "
        f"{data['rounds']} round(s) per fault. Two leaders: leader-sidecar, two unexpired "
        "leases at once (lease monitor on the role files); the recipe, two candidates' "
        "`func` running at once (it has no lease). Recovered: 5 s after the fault ends, "
        "exactly one candidate says `leader`. (`bench/safety.py`)",
        "",
        "| implementation | fault | instants with two leaders | total overlap | recovered |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    labels = {"freeze": "leader frozen (SIGSTOP) past its session",
              "blackhole": "leader's connection blackholed",
              "zk-leader": "ZooKeeper leader server killed"}
    for name, faults in data["implementations"].items():
        for fault, r in faults.items():
            lines.append(f"| {name} | {labels.get(fault, fault)} | {r['two_leader_instants']} | "
                         f"{r['overlap_s']:.2f} s | {r['recovered']}/{data['rounds']} |")
    return [*lines, ""]


def cold_start_section(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The time to the first leader of five processes started at once, before and after
    the start-up work (what a sidecar loads and does before its first verdict)."""
    lines = [
        "## Before and after: the cold start",
        "",
        f"*Before*: {before['description']} (`bench/baseline/before-cold-start.json`). "
        "*After*: this run. What changed: the path to the first verdict loads neither "
        "`typing` nor `dataclasses` (value types are slotted records), the cyclic garbage "
        "collector is off until the sidecar has started, the configuration's patterns "
        "compile at first use, the ZooKeeper session connects while the rest of the "
        "sidecar loads, and the create of the candidate's znode goes out with the creates "
        "of the election's path and the listing, in one round trip instead of three to "
        "five. The recipe's candidate no longer loads the sidecar's modules with the "
        "function that writes its role file.",
        "",
        "| role directory on | implementation | first leader, before (median) | after "
        "(median) | after / recipe |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for filesystem, found in after["filesystems"].items():
        rows = found["implementations"]
        recipe = rows.get("kazoo-recipe", {}).get("first_leader", {}).get("median_ms")
        for name, row in rows.items():
            old = before["filesystems"].get(filesystem, {}).get(name, {}).get("first_leader")
            new = row["first_leader"]["median_ms"]
            ratio = f"{new / recipe:.2f}" if recipe else "n/a"
            lines.append(
                f"| {filesystem} | {name} | "
                + ("n/a" if old is None else f"{old['median_ms']:.0f} ms (of {old['n']})")
                + f" | {new:.0f} ms (of {row['first_leader']['n']}) | {ratio} |"
            )
    return [*lines, ""]


def main() -> int:
    out = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from `bench/results/*.json`; reproduce everything "
        "with `make bench` (or `python bench/run_all.py`; `--quick` for a small smoke run). "
        "Each benchmark runs alone too: `python bench/<name>.py --help`. All of them use a "
        "real three-server ZooKeeper ensemble on loopback (Debian's package) and leave "
        "leader-sidecar's code unchanged. The peer is kazoo's own `Election` recipe "
        "(`client.Election(path, identifier).run(func)`), as its documentation shows it "
        "(`bench/recipe_candidate.py`).",
        "",
    ]
    sections = (("failover", failover_section), ("cluster_failover", cluster_failover_section),
                ("client_failover", client_failover_section), ("herd", herd_section),
                ("scale", scale_section), ("idle", idle_section), ("tls_cost", tls_section),
                ("safety", safety_section))
    notes = ROOT / "bench" / "NOTES.md"
    baseline_file = ROOT / "bench" / "baseline" / "before-anchor.json"
    for name, render in sections:
        data = load(name)
        if data is None:
            out += [f"## {name}", "", f"Not run: `bench/results/{name}.json` is missing.", ""]
            continue
        if name == "failover":
            plot(data)
        if name == "cluster_failover":
            plot_cluster(data)
        out += render(data)
    if baseline_file.exists():
        out += before_after_section(json.loads(baseline_file.read_text()), load("herd"))
    cold_before, failover = ROOT / "bench" / "baseline" / "before-cold-start.json", load("failover")
    if cold_before.exists() and failover is not None:
        out += cold_start_section(json.loads(cold_before.read_text()), failover)
    labels_before = ROOT / "bench" / "baseline" / "before-exclusive-labels-cluster-failover.json"
    cluster = load("cluster_failover")
    if labels_before.exists() and cluster is not None and "sizes" in cluster:
        out += exclusive_labels_section(json.loads(labels_before.read_text()), cluster)
    if notes.exists():
        out += [notes.read_text().rstrip(), ""]
    (DOCS / "benchmarks.md").write_text("\n".join(out))
    print(f"wrote {DOCS / 'benchmarks.md'} and {PLOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
