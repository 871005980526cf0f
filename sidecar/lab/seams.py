"""Fault seams: the sidecar run with a fault installed at one point of its code, where a
stall or a SIGSTOP does most harm (tests only; the image carries no lab).

`python -m sidecar.lab.seams run ...` is `python -m sidecar run ...` with
`sidecar.election.lease.between_clock_reads` replaced. The fault waits for a trigger: a
file named by `SEAM_TRIGGER` (the environment variable). When the seam is reached and the
file exists, the seam reads the action in it, removes it, writes the wall-clock instant
(ISO 8601) into `<trigger>.fired`, and then

- `sleep <seconds>`: stalls this thread (a descheduled worker, a collector's pause);
- `stop`: stops the whole process with SIGSTOP, kazoo's threads included, as a frozen
  node does; whoever triggered it sends SIGCONT.

Guaranteed: one action per trigger file. Not guaranteed: when the seam is next reached
(the leader reaches it at every renewal, every T/4; a follower only when it leads).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

TRIGGER_ENV = "SEAM_TRIGGER"


def _fire(trigger: Path) -> None:
    try:
        action = trigger.read_text().split()
        trigger.unlink()
    except FileNotFoundError:
        return
    fired = trigger.with_name(trigger.name + ".fired")
    fired.write_text(dt.datetime.now(dt.UTC).isoformat())
    if action[:1] == ["sleep"] and len(action) == 2:
        time.sleep(float(action[1]))
    elif action == ["stop"]:
        os.kill(os.getpid(), signal.SIGSTOP)


def install(trigger: Path) -> None:
    from ..election import lease

    def between_clock_reads() -> None:
        if trigger.exists():
            _fire(trigger)

    lease.between_clock_reads = between_clock_reads


def main() -> None:
    trigger = os.environ.get(TRIGGER_ENV)
    if trigger:
        install(Path(trigger))
    from ..__main__ import main as sidecar_main

    sidecar_main()


if __name__ == "__main__":
    main()
