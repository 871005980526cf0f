"""leader-sidecar: ZooKeeper leader election for the pods of a StatefulSet.

Layers, imports pointing one way only:
state, config  <-  zk (the only kazoo import)  <-  lease, election
state, config  <-  rolefiles, metrics, httpapi, k8s (the only kubernetes import), operator
everything     <-  runner (composition)  <-  cli
"""

__version__ = "0.1.0"
