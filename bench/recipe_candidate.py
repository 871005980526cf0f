"""One candidate of kazoo's own `Election` recipe, as its documentation shows it.

`client.Election(path, identity).run(func)`: `func` runs while this candidate leads. Here
`func` writes `leader` into `<role-dir>/role` (atomically, with the same fsync as the
sidecar's role files, so the failover timings compare like with like), appends
`start <wall clock>` to `<role-dir>/claims.log`, and returns on SIGTERM after appending
`end <wall clock>`. SIGTERM when not leading cancels the election. Then the session is
closed and the process exits 0.

Nothing else is added: no connection-state listener, no lease. That is the recipe a
Python user picks up; the safety benchmark shows what it does under faults.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kazoo.client import KazooClient

from sidecar.rolefiles import write_atomically


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zk-hosts", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--role-dir", type=Path, required=True)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    args = parser.parse_args()
    args.role_dir.mkdir(parents=True, exist_ok=True)
    claims = open(args.role_dir / "claims.log", "a", buffering=1)  # noqa: SIM115
    write_atomically(args.role_dir / "role", "follower\n")
    stop = threading.Event()

    def lead() -> None:
        write_atomically(args.role_dir / "role", "leader\n")
        claims.write(f"start {time.time():.6f}\n")
        stop.wait()
        claims.write(f"end {time.time():.6f}\n")
        write_atomically(args.role_dir / "role", "unknown\n")

    client = KazooClient(hosts=args.zk_hosts, timeout=args.session_timeout)
    client.start(timeout=30)
    election = client.Election(args.path, args.identity)
    worker = threading.Thread(target=election.run, args=(lead,), daemon=True)
    worker.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1.0)
    election.cancel()
    worker.join(5)
    client.stop()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
