"""From what the checker saw and what the soak did to a verdict: violations and recovery.

Violations (each must be 0; any other count fails the soak):
- `two_leases`: samples at which two candidates held an unexpired lease, plus pairs of
  leadership terms that overlap (the terms catch overlaps between two samples);
- `torn`: reads of a role file that was not a whole file; `lost`: a role file that was gone;
- `epochs`: a leadership period whose epoch is below the one before it, or equal to it
  while held by another candidate, or missing. The epoch is the leader znode's czxid:
  a leader that lost its connection and got it back with the same session (a quorum lost
  and regained) resumes its term with the same znode and epoch, and no one led between:
  that is one term, not two;
- `crashes`: sidecars that exited without being stopped (a sidecar may demote, never die);
- `no_leader_at_end`: the run ended without exactly one leader (and one leader label);
- `slow_checker`: the checker sampled below 500 Hz, so its word counts for less.

Recovery is measured per episode, from the instant its last fault was healed: until some
candidate holds an unexpired lease (`no leader`), and until exactly one pod is labelled
leader and that pod's sidecar says leader (`one label`). An episode after which the world
was already fine counts 0. An episode whose quiet gap ended before it recovered is counted
in `not_recovered_in_gap` and measured until it did (or the run's end).
"""

from __future__ import annotations

import bisect
import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

from .schedule import KINDS

MIN_RATE_HZ = 500.0


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
    """What the soak did in one episode, with the wall-clock instants it did it."""

    index: int
    faults: list[dict[str, Any]]  # kind, target, injected, healed, error
    healed: float  # the instant its last fault was healed
    quiet_until: float  # the next episode's first injection, or the end of the run


def _value_at(changes: Sequence[tuple[float, bool]], instant: float) -> bool:
    times = [t for t, _ in changes]
    index = bisect.bisect_right(times, instant) - 1
    return bool(changes[index][1]) if index >= 0 else False


def recovery_after(changes: Sequence[tuple[float, bool]], instant: float) -> float | None:
    """Seconds from `instant` until the timeline is true (0 if it already is); None: never."""
    if _value_at(changes, instant):
        return 0.0
    for t, value in changes:
        if t > instant and value:
            return t - instant
    return None


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3),
            "p99": round(p99, 3), "max": round(ordered[-1], 3)}


def _recoveries(changes: Sequence[tuple[float, bool]] | None,
                episodes: Sequence[EpisodeRecord]) -> dict[str, Any]:
    if changes is None:
        return {"stats": None, "not_recovered_in_gap": None, "never": None, "by_kind": {},
                "by_family": {}}
    values, late, never = [], 0, 0
    by_kind: dict[str, list[float]] = {}
    by_family: dict[str, list[float]] = {}
    for episode in episodes:
        seconds = recovery_after(changes, episode.healed)
        if seconds is None:
            never += 1
            continue
        if episode.healed + seconds > episode.quiet_until:
            late += 1
        values.append(seconds)
        for kind in {fault["kind"] for fault in episode.faults}:
            by_kind.setdefault(kind, []).append(seconds)
        for family in {KINDS[fault["kind"]].family for fault in episode.faults}:
            by_family.setdefault(family, []).append(seconds)
    return {"stats": _stats(values), "not_recovered_in_gap": late, "never": never,
            "by_kind": {kind: _stats(v) for kind, v in sorted(by_kind.items())},
            "by_family": {family: _stats(v) for family, v in sorted(by_family.items())}}


def epoch_regressions(terms: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leadership periods (in start order) whose epoch does not follow the one before."""
    found: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for term in sorted(terms, key=lambda t: t["start"]):
        epoch = term.get("epoch")
        if epoch is None:
            found.append({"term": term, "previous": previous})
            continue
        if previous is not None and (epoch < previous["epoch"] or (
                epoch == previous["epoch"] and term["identity"] != previous["identity"])):
            found.append({"term": term, "previous": previous})
        previous = term
    return found


def analyse(checked: dict[str, Any], episodes: Sequence[EpisodeRecord],
            crashes: Sequence[dict[str, Any]], end_state: dict[str, Any]) -> dict[str, Any]:
    regressions = epoch_regressions(checked["terms"])
    kubernetes = checked.get("one_label_leader") is not None
    violations = {
        "two_leases": checked["two_lease_samples"] + len(checked["overlapping_terms"]),
        "torn": checked["torn"],
        "lost": checked["lost"],
        "epochs": len(regressions),
        "crashes": len(crashes),
        "no_leader_at_end": 0 if end_state.get("one_leader") and (
            not kubernetes or end_state.get("one_label")) else 1,
        "slow_checker": 0 if checked["rate_hz"] >= MIN_RATE_HZ else 1,
    }
    kinds: dict[str, int] = {}
    for episode in episodes:
        for fault in episode.faults:
            kinds[fault["kind"]] = kinds.get(fault["kind"], 0) + 1
    return {
        "violations": violations,
        "passed": not any(violations.values()),
        "episodes": len(episodes),
        "faults": kinds,
        "fault_errors": [f for e in episodes for f in e.faults if f.get("error")],
        "terms": len(checked["terms"]),
        "checker": {key: checked[key] for key in
                    ("samples", "seconds", "rate_hz", "max_gap_ms", "label_watch_reconnects")},
        "no_leader": _recoveries(checked["leader_present"], episodes),
        "one_label": _recoveries(checked.get("one_label_leader"), episodes),
        "epoch_regressions": regressions[:20],
        "two_lease_examples": checked["two_lease_examples"],
        "overlapping_terms": checked["overlapping_terms"][:20],
        "torn_examples": checked["torn_examples"],
        "lost_examples": checked["lost_examples"],
        "crashes": list(crashes),
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


def table(report: dict[str, Any]) -> str:
    """The report as Markdown, as docs/reliability.md shows it."""
    lines = ["| check | count |", "| --- | --- |"]
    names = {
        "two_leases": "two unexpired leases (samples + overlapping terms)",
        "torn": "torn or unreadable role files", "lost": "lost role files",
        "epochs": "epochs not strictly increasing across terms",
        "crashes": "sidecars that died", "no_leader_at_end": "no single leader at the end",
        "slow_checker": "checker below 500 Hz",
    }
    lines += [f"| {names[key]} | {value} |" for key, value in report["violations"].items()]
    lines += ["", "| after the last fault of an episode is healed | n | p50 | p99 | max "
              "| past its quiet gap |", "| --- | --- | --- | --- | --- | --- |"]
    for key, title in (("no_leader", "time with no leader"),
                       ("one_label", "time until exactly one pod is labelled leader")):
        measured = report[key]
        if measured["stats"] is None:
            continue
        stats = measured["stats"]
        lines.append(f"| {title} | {stats['n']} | {_ms(stats['p50'])} | {_ms(stats['p99'])} "
                     f"| {_ms(stats['max'])} | {measured['not_recovered_in_gap']} |")
    lines += ["", "| episodes with a fault of the family | n | no leader after the heal: "
              "p50 | p99 | max |", "| --- | --- | --- | --- | --- |"]
    for family, stats in report["no_leader"].get("by_family", {}).items():
        lines.append(f"| {family} | {stats['n']} | {_ms(stats['p50'])} | {_ms(stats['p99'])} "
                     f"| {_ms(stats['max'])} |")
    lines += ["", "| fault | injected | no leader, max | one label, max |",
              "| --- | --- | --- | --- |"]
    for kind, count in sorted(report["faults"].items()):
        no_leader = report["no_leader"]["by_kind"].get(kind, {}).get("max")
        label = (report["one_label"]["by_kind"].get(kind) or {}).get("max")
        lines.append(f"| {kind} | {count} | {_ms(no_leader)} | {_ms(label)} |")
    checker = report["checker"]
    lines += ["", f"Checker: {checker['samples']} samples in {checker['seconds']:.0f} s "
                  f"({checker['rate_hz']:.0f} Hz, longest gap {checker['max_gap_ms']:.1f} ms); "
                  f"{report['terms']} leadership terms; {report['episodes']} episodes."]
    return "\n".join(lines)
