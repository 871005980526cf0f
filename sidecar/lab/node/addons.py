"""What kind installs beside its node, written for the real node: CoreDNS as the cluster's
DNS Service, rancher's local-path-provisioner behind a default StorageClass, and the
NetworkPolicy enforcement that kind's kindnet embeds (kube-network-policies).

CoreDNS runs as a pod on the node (image built here), answers for `cluster.local` and
forwards nothing: pods have no way off this machine, so neither has their DNS.
The provisioner runs as a host process with a certificate of its own
(`system:local-path-provisioner`) bound to upstream's ClusterRole; its helper pods (which
make and remove the volume directories under the node's directory) run on the node from
the Debian base image built here.
The NetworkPolicy agent runs as a host process too, as the ServiceAccount of upstream's
DaemonSet (`kube-system/kube-network-policies`, see `pki.py` for why a token) with
upstream's ClusterRole: list and watch pods, namespaces and NetworkPolicies. Nodes and the
admin network policy APIs are left out: v0.8.0 reads them only with the admin policies on.
"""

from __future__ import annotations

from pathlib import Path

from sidecar.lab.node.network import DNS_SERVICE_IP

COREDNS_IMAGE = "localhost/coredns:1.15.0"
HELPER_IMAGE = "localhost/bookworm:minbase"
LOCAL_PATH_NAMESPACE = "local-path-storage"
LOCAL_PATH_USER = "system:local-path-provisioner"
STORAGE_CLASS = "standard"  # kind's name for it
NETWORK_POLICY_AGENT = "kube-network-policies"  # its ServiceAccount, in kube-system

COREDNS = f"""\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
  - apiGroups: [""]
    resources: ["endpoints", "services", "pods", "namespaces"]
    verbs: ["list", "watch"]
  - apiGroups: ["discovery.k8s.io"]
    resources: ["endpointslices"]
    verbs: ["list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
  - kind: ServiceAccount
    name: coredns
    namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:53 {{
        errors
        health {{
            lameduck 5s
        }}
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }}
        prometheus :9153
        cache 30
        loop
        loadbalance
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
        - name: coredns
          image: {COREDNS_IMAGE}
          imagePullPolicy: Never
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - {{name: dns, containerPort: 53, protocol: UDP}}
            - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
            - {{name: metrics, containerPort: 9153, protocol: TCP}}
          readinessProbe:
            httpGet: {{path: /ready, port: 8181}}
            periodSeconds: 2
          livenessProbe:
            httpGet: {{path: /health, port: 8080}}
            initialDelaySeconds: 10
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              add: ["NET_BIND_SERVICE"]
              drop: ["ALL"]
          volumeMounts:
            - {{name: config, mountPath: /etc/coredns, readOnly: true}}
      volumes:
        - name: config
          configMap:
            name: coredns
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  clusterIP: {DNS_SERVICE_IP}
  selector:
    k8s-app: kube-dns
  ports:
    - {{name: dns, port: 53, protocol: UDP}}
    - {{name: dns-tcp, port: 53, protocol: TCP}}
    - {{name: metrics, port: 9153, protocol: TCP}}
"""

NETWORK_POLICIES = f"""\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {NETWORK_POLICY_AGENT}
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {NETWORK_POLICY_AGENT}
rules:
  - apiGroups: [""]
    resources: ["pods", "namespaces"]
    verbs: ["list", "watch"]
  - apiGroups: ["networking.k8s.io"]
    resources: ["networkpolicies"]
    verbs: ["list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {NETWORK_POLICY_AGENT}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {NETWORK_POLICY_AGENT}
subjects:
  - kind: ServiceAccount
    name: {NETWORK_POLICY_AGENT}
    namespace: kube-system
"""


def local_path(volume_root: Path) -> str:
    """Namespace, RBAC, ConfigMap and default StorageClass of the provisioner."""
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {LOCAL_PATH_NAMESPACE}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: local-path-provisioner-service-account
  namespace: {LOCAL_PATH_NAMESPACE}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: local-path-provisioner-role
rules:
  - apiGroups: [""]
    resources: ["nodes", "persistentvolumeclaims", "configmaps", "pods", "pods/log"]
    verbs: ["get", "list", "watch"]
  - apiGroups: [""]
    resources: ["persistentvolumes"]
    verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create", "patch"]
  - apiGroups: ["storage.k8s.io"]
    resources: ["storageclasses"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: local-path-provisioner-role
  namespace: {LOCAL_PATH_NAMESPACE}
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: local-path-provisioner-bind
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: local-path-provisioner-role
subjects:
  - {{kind: User, name: "{LOCAL_PATH_USER}", apiGroup: rbac.authorization.k8s.io}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: local-path-provisioner-bind
  namespace: {LOCAL_PATH_NAMESPACE}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: local-path-provisioner-role
subjects:
  - {{kind: User, name: "{LOCAL_PATH_USER}", apiGroup: rbac.authorization.k8s.io}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-path-config
  namespace: {LOCAL_PATH_NAMESPACE}
data:
  config.json: |-
    {LOCAL_PATH_CONFIG.format(root=volume_root)}
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "$VOL_DIR"
  helperPod.yaml: |-
{_indent(HELPER_POD, 4)}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {STORAGE_CLASS}
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
"""


LOCAL_PATH_CONFIG = ('{{"nodePathMap": [{{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", '
                     '"paths": ["{root}"]}}]}}')

HELPER_POD = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: helper-pod
spec:
  priorityClassName: system-node-critical
  tolerations:
    - key: node.kubernetes.io/disk-pressure
      operator: Exists
      effect: NoSchedule
  containers:
    - name: helper-pod
      image: {HELPER_IMAGE}
      imagePullPolicy: Never
"""


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())
