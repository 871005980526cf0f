"""Herd effect: what one leader change costs, for N = 10, 50, 200 candidates.

For leader-sidecar, kazoo's `Election` recipe and a naive election (every candidate
watches the parent's children), all against the same three-server ensemble in the same run,
with in-process candidates (see `inproc.py`: each has its own session). Each round the
leader resigns gracefully; from that instant until the successor leads plus a quiet tail,
the survivors' client-side counters give:

- the election's watch notifications delivered, and candidates woken by them (got at
  least one): the herd;
- leader-sidecar's leader-record notifications: how followers learn who leads (one each);
- the time until every survivor names the new leader (leader-sidecar: status.json
  `leader`; naive: the first child it listed; the recipe tells a candidate nothing about
  who else leads);
- requests sent and bytes received (the candidates' sockets, pings included) in a window
  of one session timeout after the change, each minus the steady-state rate measured just
  before over an equal time by the whole group (leader-sidecar's leader renews its lease
  and its heir its anchor; the recipe and the naive election send nothing between
  changes);
- the servers' `zk_packets_received` (all three, from `mntr`) over the same window minus
  the same baseline: what the ensemble sees, pings included in the baseline.

Run: `python bench/herd.py` (add `--sizes 10,50` for a quick look).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, mntr, mntr_total, write_json
from inproc import KINDS

from sidecar.lab.candidates import wait_for
from sidecar.lab.ensemble import Ensemble

BASELINE = 2.0


def totals(members: list[Any]) -> tuple[int, int, list[int], int, int]:
    watches = [m.counters.watch_events for m in members]
    return (
        sum(m.counters.requests for m in members), sum(watches), watches,
        sum(m.counters.record_events for m in members),
        sum(m.counters.bytes_received for m in members),
    )


def all_name(survivors: list[Any], leader_id: str) -> bool:
    return all(m.leader_id() == leader_id for m in survivors)


def one_leader(members: list[Any]) -> Any | None:
    leading = [m for m in members if m.leading()]
    if len(leading) == 1 and all(m.decided() for m in members):
        return leading[0]
    return None


def measure(kind: str, size: int, ensemble: Ensemble, base: Path, args: argparse.Namespace,
            ) -> dict[str, Any]:
    factory = KINDS[kind]
    election = f"herd-{kind}-{size}"
    members: list[Any] = [
        factory(ensemble.connect_string, election, f"c{i:03d}", base / election,
                args.session_timeout)
        for i in range(size)
    ]
    started = time.monotonic()
    for member in members:
        member.start()
    if not wait_for(lambda: one_leader(members) is not None, 60, 0.01):
        raise SystemExit(f"{kind} N={size}: no single leader")
    first_leader = time.monotonic() - started
    rounds = []
    try:
        for _ in range(args.rounds):
            time.sleep(0.5)
            leader = one_leader(members)
            assert leader is not None
            survivors = [m for m in members if m is not leader]
            # Steady-state rates over BASELINE seconds.
            # The whole group's rates, leader included: after the change the new leader
            # renews instead of the old one, and a new heir keeps its anchor.
            r0, _, _, _, b0 = totals(members)
            p0 = mntr_total(mntr(ensemble), "zk_packets_received")
            time.sleep(BASELINE)
            ra, _, _, _, ba = totals(members)
            r1, w1, watch_before, e1, b1 = totals(survivors)
            p1 = mntr_total(mntr(ensemble), "zk_packets_received")
            request_rate = (ra - r0) / BASELINE
            byte_rate = (ba - b0) / BASELINE
            packet_rate = (p1 - p0) / BASELINE
            # The leader change.
            t0 = time.monotonic()
            resign = threading.Thread(target=leader.resign)
            resign.start()
            if not wait_for(lambda s=survivors: any(m.leading() for m in s), 30, 0.0005):
                raise SystemExit(f"{kind} N={size}: no successor")
            took = time.monotonic() - t0
            successor = next(m for m in survivors if m.leading())
            known_ms: float | None = None
            winner = successor.own_id()
            if successor.leader_id() is not None and wait_for(
                lambda s=survivors, w=winner: all_name(s, w),
                args.session_timeout + 1.0, 0.0005,
            ):
                known_ms = (time.monotonic() - t0) * 1000
            # The tail: stragglers' requests, over one session timeout.
            time.sleep(max(0.0, t0 + args.session_timeout + 0.25 - time.monotonic()))
            resign.join(30)
            window = time.monotonic() - t0
            r2, w2, watch_after, e2, b2 = totals(survivors)
            p2 = mntr_total(mntr(ensemble), "zk_packets_received")
            members = survivors
            woken = sum(1 for a, b in zip(watch_before, watch_after, strict=True) if b > a)
            rounds.append({
                "candidates": len(survivors) + 1,
                "failover_ms": took * 1000,
                "watch_events": w2 - w1,
                "woken": woken,
                "record_events": e2 - e1,
                "followers_know_ms": known_ms,
                "requests": r2 - r1,
                "requests_net": (r2 - r1) - request_rate * window,
                "bytes_net": (b2 - b1) - byte_rate * window,
                "server_packets_net": (p2 - p1) - packet_rate * window,
                "steady_requests_per_s": request_rate,
                "steady_server_packets_per_s": packet_rate,
            })
            known = "n/a" if known_ms is None else f"{known_ms:.1f} ms"
            print(f"  {kind:<15} N={size:<4} woken {woken:>4}  watch events {w2 - w1:>4}  "
                  f"record events {e2 - e1:>4}  requests {r2 - r1:>5} "
                  f"(net {rounds[-1]['requests_net']:>7.1f})  "
                  f"bytes net {rounds[-1]['bytes_net']:>9.0f}  "
                  f"failover {took * 1000:7.1f} ms  all know {known}", flush=True)
    finally:
        for member in reversed(members):
            try:
                member.stop()
            except Exception as error:  # a failing stop must not keep the others running
                print(f"  stopping {kind} candidate failed: {error}", file=sys.stderr)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rounds)

    known = [r["followers_know_ms"] for r in rounds if r["followers_know_ms"] is not None]

    return {
        "first_leader_ms": first_leader * 1000,
        "rounds": rounds,
        "woken_per_change": mean("woken"),
        "watch_events_per_change": mean("watch_events"),
        "record_events_per_change": mean("record_events"),
        "followers_know_median_ms": statistics.median(known) if known else None,
        "requests_per_change": mean("requests"),
        "requests_net_per_change": mean("requests_net"),
        "bytes_net_per_change": mean("bytes_net"),
        "server_packets_net_per_change": mean("server_packets_net"),
        "steady_requests_per_s": mean("steady_requests_per_s"),
        "steady_server_packets_per_s": mean("steady_server_packets_per_s"),
        "failover_median_ms": statistics.median(r["failover_ms"] for r in rounds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200")
    parser.add_argument("--implementations", default=",".join(KINDS))
    parser.add_argument("--rounds", type=int, default=5, help="leader changes per N")
    parser.add_argument("--session-timeout", type=float, default=4.0)
    parser.add_argument("--tick-ms", type=int, default=200)
    parser.add_argument("--json", type=Path, default=RESULTS / "herd.json")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-herd-"))
    ensemble = Ensemble(size=3, tick_time_ms=args.tick_ms).start()
    results: dict[str, dict[str, Any]] = {}
    try:
        info = machine(ensemble)
        for size in (int(s) for s in args.sizes.split(",")):
            for kind in args.implementations.split(","):
                results.setdefault(kind, {})[str(size)] = measure(kind, size, ensemble, base, args)
    finally:
        ensemble.stop()
        shutil.rmtree(base, ignore_errors=True)
    result = {"machine": info, "session_timeout_s": args.session_timeout,
              "rounds": args.rounds, "implementations": results}
    print_table(result)
    write_json(args.json, result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    print(f"\nherd effect per leader change (mean of {result['rounds']} graceful changes, "
          f"in-process candidates, session timeout {result['session_timeout_s']:g} s)")
    print(f"{'implementation':<16}{'N':>5}{'woken':>7}{'record ev':>10}{'requests':>10}"
          f"{'net req':>9}{'net bytes':>11}{'steady req/s':>14}{'failover ms':>13}"
          f"{'all know ms':>13}")
    for kind, sizes in result["implementations"].items():
        for size, row in sizes.items():
            known = row.get("followers_know_median_ms")
            print(f"{kind:<16}{size:>5}{row['woken_per_change']:>7.1f}"
                  f"{row.get('record_events_per_change', 0.0):>10.1f}"
                  f"{row['requests_per_change']:>10.1f}"
                  f"{row['requests_net_per_change']:>9.1f}"
                  f"{row.get('bytes_net_per_change', 0.0):>11.0f}"
                  f"{row['steady_requests_per_s']:>14.1f}{row['failover_median_ms']:>13.1f}"
                  f"{'n/a' if known is None else f'{known:.1f}':>13}")


if __name__ == "__main__":
    sys.exit(main())
