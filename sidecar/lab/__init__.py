"""The local lab: a real ZooKeeper ensemble, a fault proxy and sidecars as processes.

Shared by the demo, the tests and the benchmarks, so that all three exercise the same parts.
"""
