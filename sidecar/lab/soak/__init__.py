"""The chaos soak: a seeded schedule of faults (`schedule`) against a real ensemble,
sidecar processes and control plane (`world`), watched by an independent checker process
(`checker`), judged by `analysis`; `run` ties them together, `__main__` is `make soak`."""
