"""The local lab: a real ZooKeeper ensemble, a fault proxy and sidecar processes, for the demo, tests and benchmarks."""
