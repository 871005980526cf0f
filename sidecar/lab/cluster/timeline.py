"""Where a failover's time goes: the sidecars' own log lines beside the watch's record.

After a round of `failover.fail_over`, the old and the new leader's logs (the pod
runner keeps each container's in `<pod>-<uid[:8]>/sidecar.log`) give the milestones
between the action's record in the API server and the new label, all on this machine's
wall clock (log lines carry milliseconds):

- `watch`: the action's record to the old leader's own reaction to it, through its
  operator's watch ("own pod is being deleted", "step-down annotation on own pod");
- `prestop`: the action's record to the preStop hook's `leader-sidecar leave` reaching
  the sidecar ("leave asked through the control socket"): a process start-up, a backup
  for the watch (a delete only);
- `leave`: the first of those two to the old leader's znode deleted ("deleted own
  znode"): demoting, the role files, the delete;
- `handover`: that delete to the successor's "elected leader" (ZooKeeper's watch, the
  heir's check);
- `label`: that to the new label in the watch (the successor's check of the other
  pods' labels, its own patch, the watch's delivery).

A part whose line is missing (a crash has no leave) is left out. For the benchmark's
report only; the sidecar never imports it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sidecar.lab.cluster.failover import Failover

STAMP = "%Y-%m-%d %H:%M:%S,%f"
SLACK = 0.05  # seconds: a log line's millisecond is truncated; the watch's is not
PARTS = {
    "watch": "the old leader's watch sees the action",
    "prestop": "the preStop `leader-sidecar leave` arrives",
    "leave": "the old leader leaves (znode deleted)",
    "handover": "ZooKeeper hands over (successor elected)",
    "label": "the successor's label patch, seen by the watch",
}
REACTIONS = ("own pod is being deleted", "step-down annotation on own pod")


def log_times(path: Path, marker: str, after: float, before: float) -> list[float]:
    """Wall times of the lines of `path` containing `marker`, within [after, before]."""
    times = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        if marker not in line or len(line) < 23:
            continue
        try:
            when = dt.datetime.strptime(line[:23], STAMP).timestamp()
        except ValueError:
            continue
        if after <= when <= before:
            times.append(when)
    return times


def parts(failover: Failover, pods_dir: Path) -> dict[str, float]:
    """Seconds of each part of `PARTS` that the logs show, for one round."""
    start, end = failover.walls["recorded"], failover.walls["labelled"]
    old = pods_dir / f"{failover.old}-{failover.old_uid[:8]}" / "sidecar.log"
    new = pods_dir / f"{failover.new}-{failover.new_uid[:8]}" / "sidecar.log"
    window = (start - SLACK, end + SLACK)

    def first(path: Path, *markers: str) -> float | None:
        found = [t for marker in markers for t in log_times(path, marker, *window)]
        return min(found) if found else None

    reacted = first(old, *REACTIONS)
    prestop = first(old, "leave asked through the control socket")
    left = first(old, "deleted own znode")
    elected = first(new, "elected leader")
    result: dict[str, float] = {}
    if reacted is not None:
        result["watch"] = max(0.0, reacted - start)
    if prestop is not None:
        result["prestop"] = max(0.0, prestop - start)
    began = min((t for t in (reacted, prestop) if t is not None), default=None)
    if began is not None and left is not None:
        result["leave"] = max(0.0, left - began)
    if left is not None and elected is not None:
        result["handover"] = max(0.0, elected - left)
    if elected is not None:
        result["label"] = max(0.0, end - elected)
    return result
