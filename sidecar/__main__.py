"""`python -m sidecar` and the `leader-sidecar` command (pyproject.toml).

For `run`, the cyclic garbage collector is off from here on: every object made while the
sidecar loads (modules, classes, functions) lives as long as the process, and a collector
that walks them again and again costs about 4 % of the CPU before the first verdict (a
sidecar starts in a crowd of pods). `cli.cmd_run` freezes them out of later collections
and turns the collector on once the sidecar has started; a bad command line exits first.
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
