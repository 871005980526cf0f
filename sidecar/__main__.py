"""`python -m sidecar` and the `leader-sidecar` command (pyproject.toml).

For `run`, the cyclic garbage collector is off from here on until the first verdict:
what the sidecar loads before it (kazoo, the election) lives as long as the process, and
a collector that walks it again and again costs about 4 % of the CPU a cold start waits
for (a sidecar starts in a crowd of pods). `cli.cmd_run` turns it on again.
"""

import gc
import sys


def main() -> None:
    if sys.argv[1:2] == ["run"]:
        gc.disable()
    from .cli import entry

    entry()


if __name__ == "__main__":
    main()
