{{/*
Names. The full name is the release name (or fullnameOverride), so that `helm install demo`
gives pods demo-0, demo-1, ... and the Service demo-leader. It is cut to 36 characters so
that the longest derived name, <fullname>-zookeeper-headless, stays a valid DNS label.
*/}}
{{- define "le.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "le.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 36 | trimSuffix "-" }}
{{- end }}

{{- define "le.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The election (group) name; also the value of the pod label leader-election/name. */}}
{{- define "le.election" -}}
{{- default (include "le.fullname" .) .Values.election.name }}
{{- end }}

{{- define "le.zkName" -}}
{{- printf "%s-zookeeper" (include "le.fullname" .) }}
{{- end }}

{{- define "le.zkHeadless" -}}
{{- printf "%s-zookeeper-headless" (include "le.fullname" .) }}
{{- end }}

{{- define "le.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "le.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "le.zkAuthSecret" -}}
{{- default (printf "%s-zk-auth" (include "le.fullname" .)) .Values.zkAuth.existingSecret }}
{{- end }}

{{/*
The digest credentials (user:password) the chart's Secret holds, resolved once per render
(the Secret and the pods' checksum must see the same value): zkAuth.credentials when set,
else the ones the Secret in the cluster already holds (kept on upgrades and, by
helm.sh/resource-policy: keep, across an uninstall), else new ones. A new password locks
the sidecars out of the election znodes made with the old one, so a render that cannot
read the cluster (`lookup` returns nothing: helm template, --dry-run=client, Argo CD, Flux)
and has no credentials given fails rather than invent some. The cluster is told apart by
listing the namespace's Secrets: a cluster answers with a (possibly empty) list, no cluster
with nothing at all; helm itself lists them to find its releases.
*/}}
{{- define "le.zkAuthCredentials" -}}
{{- if not (hasKey .Values.zkAuth "resolvedCredentials") }}
{{- $credentials := .Values.zkAuth.credentials }}
{{- if not $credentials }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "le.zkAuthSecret" .) }}
{{- $kept := index ($existing.data | default dict) .Values.zkAuth.secretKey | default "" }}
{{- if $kept }}
{{- $credentials = b64dec $kept }}
{{- else if lookup "v1" "Secret" .Release.Namespace "" }}
{{- $credentials = printf "leader-sidecar:%s" (randAlphaNum 40) }}
{{- else }}
{{- fail "zkAuth: this render cannot read the cluster (helm template, helm install --dry-run=client, Argo CD, Flux), so it cannot keep the generated ZooKeeper password, and a new one on each render locks the sidecars out of their election znodes: set zkAuth.credentials or zkAuth.existingSecret (see docs/security.md)" }}
{{- end }}
{{- end }}
{{- $_ := set .Values.zkAuth "resolvedCredentials" $credentials }}
{{- end }}
{{- .Values.zkAuth.resolvedCredentials }}
{{- end }}

{{/*
Checksum of the credentials, in the pod template so that the pods roll when they change:
the chart's own credentials, or the data of zkAuth.existingSecret as the cluster holds it
(its name and key where no cluster can be read).
*/}}
{{- define "le.zkAuthChecksum" -}}
{{- if .Values.zkAuth.existingSecret }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.zkAuth.existingSecret }}
{{- $data := index ($secret.data | default dict) .Values.zkAuth.secretKey | default "" }}
{{- if $data }}
{{- $data | sha256sum }}
{{- else }}
{{- printf "%s/%s" .Values.zkAuth.existingSecret .Values.zkAuth.secretKey | sha256sum }}
{{- end }}
{{- else }}
{{- include "le.zkAuthCredentials" . | sha256sum }}
{{- end }}
{{- end }}

{{/* Labels shared by every object; call with (dict "ctx" $ "component" "...") */}}
{{- define "le.labels" -}}
helm.sh/chart: {{ include "le.chart" .ctx }}
{{ include "le.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: leader-election
{{- end }}

{{- define "le.selectorLabels" -}}
app.kubernetes.io/name: {{ include "le.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The leader-sidecar image (sidecar, demo app, test pods). */}}
{{- define "le.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "le.zkImage" -}}
{{- printf "%s:%s" .Values.zookeeper.image.repository .Values.zookeeper.image.tag }}
{{- end }}

{{/*
ZooKeeper connect string for the sidecars: externalZookeeper.hosts when set (with the
chart's ensemble deployed or not), else the chart's client Service (kube-proxy spreads
clients over the ready servers, and a server is ready only while it has a quorum).
*/}}
{{- define "le.zkHosts" -}}
{{- if .Values.externalZookeeper.hosts }}
{{- .Values.externalZookeeper.hosts }}
{{- else if .Values.zookeeper.enabled }}
{{- printf "%s.%s.svc.%s:2181" (include "le.zkName" .) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- required "externalZookeeper.hosts is required when zookeeper.enabled is false" .Values.externalZookeeper.hosts }}
{{- end }}
{{- end }}

{{/* Host name of ensemble pod number $i through the headless Service. */}}
{{- define "le.zkPodHost" -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "le.zkName" .ctx) .index (include "le.zkHeadless" .ctx) .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/*
ZOO_SERVERS: one `server.<id>=<host>:2888:3888;2181` per ensemble pod, id = ordinal + 1.
The `;2181` client port is what ZooKeeper >= 3.5 needs in the server list.
*/}}
{{- define "le.zooServers" -}}
{{- $servers := list }}
{{- range $i := until (int .Values.zookeeper.replicas) }}
{{- $host := include "le.zkPodHost" (dict "ctx" $ "index" $i) }}
{{- $servers = append $servers (printf "server.%d=%s:2888:3888;2181" (add1 $i) $host) }}
{{- end }}
{{- join " " $servers }}
{{- end }}

{{/* Whether the application container is the bundled demo app. */}}
{{- define "le.demoApp" -}}
{{- if not .Values.app.image.repository }}true{{ end }}
{{- end }}

{{/*
The restricted Pod Security profile for one container. Call with
(dict "readOnly" bool "runAsUser" int).
*/}}
{{- define "le.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "le.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsUser }}
fsGroup: {{ .runAsUser }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The API credentials, projected by hand so that only the container that talks to the
Kubernetes API (the sidecar, one test pod) gets them; the pods disable the automatic mount.
The same three files the kubelet would inject, at the same path the clients look at.
*/}}
{{- define "le.apiAccessVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- end }}

{{- define "le.apiAccessMount" -}}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end }}

{{/* Checks that values which each pass the schema also make sense together. */}}
{{- define "le.validate" -}}
{{- if and .Values.sidecar.native (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "sidecar.native=true needs Kubernetes >= 1.29 (native sidecar containers), this cluster is %s: set sidecar.native=false" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $stop := addf .Values.election.sessionTimeoutSeconds 10 }}
{{- if lt (float64 .Values.app.terminationGracePeriodSeconds) $stop }}
{{- fail (printf "app.terminationGracePeriodSeconds must be at least election.sessionTimeoutSeconds + 10 (%v) so that a stopping sidecar can leave the election before it is killed" $stop) }}
{{- end }}
{{- /*
The ensemble's size is fixed for a release: every server's peer list (ZOO_SERVERS) is
static and the pods restart in parallel, so old and new servers could each form a quorum
of their own (a split ensemble). `lookup` reads the running StatefulSet (nothing without
a cluster, or on a first install).
*/}}
{{- if .Values.zookeeper.enabled }}
{{- $running := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "le.zkName" .) }}
{{- if $running }}
{{- $current := int ($running.spec.replicas | default 1) }}
{{- if ne $current (int .Values.zookeeper.replicas) }}
{{- fail (printf "zookeeper.replicas cannot change on a live release: the ensemble %s runs %d servers, and %d servers with a static peer list restarted in parallel can split into two quorums. Keep zookeeper.replicas=%d, or follow \"Changing the size of the ensemble\" in docs/deployment.md" (include "le.zkName" .) $current (int .Values.zookeeper.replicas) $current) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
