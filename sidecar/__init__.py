"""leader-sidecar: ZooKeeper leader election for the pods of a StatefulSet.

Layers, imports pointing one way only:
state, config  <-  zk (the sidecar's only kazoo import)  <-  election/ (candidacy,
                   presence, lease, record, core)
state, config  <-  rolefiles, metrics, control, httpapi, kubeapi (the only HTTP client of
                   the API), k8s, operator (the only kopf import)
everything     <-  runner (composition)  <-  cli  <-  __main__
A cold start is CPU the first election waits for (a sidecar starts in a crowd of pods):
the path to the first verdict loads neither `typing` nor `dataclasses` (`state.Record`),
the faces load after it, and `__main__` keeps the garbage collector off meanwhile.
lab/ stands in for the world (ensemble, fault proxy, processes, local cluster, fault
seams, an operator's zkCli with a kazoo client of its own); the sidecar itself never
imports it.
"""

__version__ = "0.1.0"
