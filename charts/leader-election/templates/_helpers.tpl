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
{{- include "le.failWithoutCluster" . }}
{{- end }}
{{- end }}
{{- $_ := set .Values.zkAuth "resolvedCredentials" $credentials }}
{{- end }}
{{- .Values.zkAuth.resolvedCredentials }}
{{- end }}

{{/*
A render that cannot read the cluster (`lookup` returns nothing) cannot keep what the chart
generated at the first install: the digest password and the ZooKeeper TLS certificates.
New ones on each render would lock the sidecars out (NoAuth on their znodes, a CA that no
longer signs the servers' certificates), so the chart fails, naming every value that
avoids it, whichever of them asked first.
*/}}
{{- define "le.failWithoutCluster" -}}
{{- $missing := list }}
{{- if and .Values.zkAuth.enabled (not .Values.zkAuth.existingSecret) (not .Values.zkAuth.credentials) }}
{{- $missing = append $missing "the ZooKeeper password: set zkAuth.credentials or zkAuth.existingSecret (see docs/security.md)" }}
{{- end }}
{{- if include "le.zkTlsGenerated" . }}
{{- $missing = append $missing "the ZooKeeper TLS certificates: set zookeeper.tls.existingSecret, e.g. cert-manager's (see docs/deployment.md)" }}
{{- end }}
{{- fail (printf "this render cannot read the cluster (helm template, helm install --dry-run=client, Argo CD, Flux), so it cannot keep what the chart generates at the first install, and new values on each render lock the sidecars out of ZooKeeper. Missing: %s" (join "; " $missing)) }}
{{- end }}

{{/*
ZooKeeper's client port: the secure port (Netty, TLS only, client certificates required)
with zookeeper.tls.enabled, else the plain one. Never both.
*/}}
{{- define "le.zkClientPort" -}}
{{- ternary 2281 2181 (and .Values.zookeeper.enabled .Values.zookeeper.tls.enabled) }}
{{- end }}

{{/* Whether the chart generates the ensemble's CA and certificates (no existing Secret). */}}
{{- define "le.zkTlsGenerated" -}}
{{- if and .Values.zookeeper.enabled .Values.zookeeper.tls.enabled (not .Values.zookeeper.tls.existingSecret) }}true{{ end }}
{{- end }}

{{/* The servers' Secret (tls.crt, tls.key, ca.crt): the given one or the chart's. */}}
{{- define "le.zkTlsServerSecret" -}}
{{- default (printf "%s-zookeeper-tls" (include "le.fullname" .)) .Values.zookeeper.tls.existingSecret }}
{{- end }}

{{- define "le.zkTlsGeneratedClientSecret" -}}
{{- printf "%s-zookeeper-client-tls" (include "le.fullname" .) }}
{{- end }}

{{/*
Whether the sidecars speak TLS: to an external ensemble (externalZookeeper.hosts, which
wins when set) as externalZookeeper.tls says, else to the chart's as zookeeper.tls says.
*/}}
{{- define "le.sidecarTls" -}}
{{- if .Values.externalZookeeper.hosts }}
{{- if .Values.externalZookeeper.tls.enabled }}true{{ end }}
{{- else if and .Values.zookeeper.enabled .Values.zookeeper.tls.enabled }}true{{ end }}
{{- end }}

{{/*
The sidecars' Secret (tls.crt, tls.key: their client certificate; ca.crt: the CA that signed
the servers' certificates): externalZookeeper.tls.existingSecret for an external ensemble;
else zookeeper.tls.existingClientSecret, else zookeeper.tls.existingSecret (one certificate
for both ends), else the chart's generated client Secret.
*/}}
{{- define "le.sidecarTlsSecret" -}}
{{- if .Values.externalZookeeper.hosts }}
{{- required "externalZookeeper.tls.existingSecret is required with externalZookeeper.tls.enabled: a Secret with ca.crt (the ensemble's CA) and tls.crt, tls.key (the sidecars' client certificate)" .Values.externalZookeeper.tls.existingSecret }}
{{- else }}
{{- .Values.zookeeper.tls.existingClientSecret | default .Values.zookeeper.tls.existingSecret | default (include "le.zkTlsGeneratedClientSecret" .) }}
{{- end }}
{{- end }}

{{/*
Names the servers' certificate must carry: the client Service as clients may spell it (the
sidecars' connect string is its fully qualified name, and they check it), each server
through the headless Service (the `helm test` pod asks each one), and localhost for the
probes inside the pod.
*/}}
{{- define "le.zkTlsServerNames" -}}
{{- $ns := .Release.Namespace }}
{{- $service := include "le.zkName" . }}
{{- $names := list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns) (printf "%s.%s.svc.%s" $service $ns .Values.clusterDomain) }}
{{- range $i := until (int .Values.zookeeper.replicas) }}
{{- $pod := printf "%s-%d.%s" $service $i (include "le.zkHeadless" $) }}
{{- $names = append $names (printf "%s.%s.svc" $pod $ns) }}
{{- $names = append $names (include "le.zkPodHost" (dict "ctx" $ "index" $i)) }}
{{- $peer := include "le.zkPeerService" (dict "ctx" $ "index" $i) }}
{{- $names = append $names (printf "%s.%s.svc" $peer $ns) }}
{{- $names = append $names (include "le.zkPeerHost" (dict "ctx" $ "index" $i)) }}
{{- end }}
{{- append $names "localhost" | toJson }}
{{- end }}

{{/*
The generated CA, server and client certificates (base64 PEM, as a Secret's data holds
them), resolved once per render: the ones the chart's two Secrets in the cluster already
hold (kept on upgrades and, by helm.sh/resource-policy: keep, across an uninstall), else new
ones. Both Secrets must be there and name the same CA to be kept; otherwise all three are
made anew (the CA's key is not kept, so a lone certificate cannot be re-issued): deleting
the Secrets is how the generated CA is rotated. Without a cluster to read, the render
fails (le.failWithoutCluster) rather than invent certificates the running pods do not have.
sprig writes PKCS#1 RSA keys; the servers convert theirs to PKCS#8 when they start.
*/}}
{{- define "le.zkTlsMaterial" -}}
{{- if .Values.zookeeper.tls.existingClientSecret }}
{{- fail "zookeeper.tls.existingClientSecret needs zookeeper.tls.existingSecret: the chart's generated CA would not trust a client certificate it did not sign. Set both (one CA), or neither" }}
{{- end }}
{{- if not (hasKey .Values.zookeeper.tls "resolvedMaterial") }}
{{- $ns := .Release.Namespace }}
{{- $server := (lookup "v1" "Secret" $ns (include "le.zkTlsServerSecret" .)).data | default dict }}
{{- $client := (lookup "v1" "Secret" $ns (include "le.zkTlsGeneratedClientSecret" .)).data | default dict }}
{{- $material := dict }}
{{- $complete := true }}
{{- range $key := list "ca.crt" "tls.crt" "tls.key" }}
{{- if not (and (index $server $key) (index $client $key)) }}{{ $complete = false }}{{ end }}
{{- end }}
{{- if and $complete (eq (index $server "ca.crt") (index $client "ca.crt")) }}
{{- $material = dict "ca" (index $server "ca.crt") "serverCert" (index $server "tls.crt") "serverKey" (index $server "tls.key") "clientCert" (index $client "tls.crt") "clientKey" (index $client "tls.key") }}
{{- else if lookup "v1" "Secret" $ns "" }}
{{- $days := int .Values.zookeeper.tls.validityDays }}
{{- $ca := genCA (printf "%s ZooKeeper CA" (include "le.zkName" .)) $days }}
{{- $names := include "le.zkTlsServerNames" . | fromJsonArray }}
{{- $serverCert := genSignedCert (include "le.zkName" .) (list "127.0.0.1") $names $days $ca }}
{{- $clientCert := genSignedCert (printf "%s leader-sidecar" (include "le.fullname" .)) nil nil $days $ca }}
{{- $material = dict "ca" ($ca.Cert | b64enc) "serverCert" ($serverCert.Cert | b64enc) "serverKey" ($serverCert.Key | b64enc) "clientCert" ($clientCert.Cert | b64enc) "clientKey" ($clientCert.Key | b64enc) }}
{{- else }}
{{- include "le.failWithoutCluster" . }}
{{- end }}
{{- $_ := set .Values.zookeeper.tls "resolvedMaterial" $material }}
{{- end }}
{{- toJson .Values.zookeeper.tls.resolvedMaterial }}
{{- end }}

{{/*
Checksum of a TLS Secret the pods mount, in their template so that they roll when it
changes: the generated material ("server" or "client" half), or an existing Secret's data
as the cluster holds it at render time (its name where no cluster can be read).
Call with (dict "ctx" $ "half" "server"|"client" "secret" name).
*/}}
{{- define "le.zkTlsChecksum" -}}
{{- $ctx := .ctx }}
{{- if and (include "le.zkTlsGenerated" $ctx) (or (eq .half "server") (eq .secret (include "le.zkTlsGeneratedClientSecret" $ctx))) }}
{{- $m := include "le.zkTlsMaterial" $ctx | fromJson }}
{{- if eq .half "server" }}
{{- printf "%s/%s/%s" $m.ca $m.serverCert $m.serverKey | sha256sum }}
{{- else }}
{{- printf "%s/%s/%s" $m.ca $m.clientCert $m.clientKey | sha256sum }}
{{- end }}
{{- else }}
{{- $secret := lookup "v1" "Secret" $ctx.Release.Namespace .secret }}
{{- if $secret.data }}
{{- toJson $secret.data | sha256sum }}
{{- else }}
{{- .secret | sha256sum }}
{{- end }}
{{- end }}
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
{{- printf "%s.%s.svc.%s:%s" (include "le.zkName" .) .Release.Namespace .Values.clusterDomain (include "le.zkClientPort" .) }}
{{- else }}
{{- required "externalZookeeper.hosts is required when zookeeper.enabled is false" .Values.externalZookeeper.hosts }}
{{- end }}
{{- end }}

{{/* Name of the Service of ensemble pod number $i alone (the address its peers dial). */}}
{{- define "le.zkPeerService" -}}
{{- printf "%s-%d" (include "le.zkName" .ctx) .index }}
{{- end }}

{{/* Fully qualified name of that Service. */}}
{{- define "le.zkPeerHost" -}}
{{- printf "%s.%s.svc.%s" (include "le.zkPeerService" .) .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/* Host name of ensemble pod number $i through the headless Service. */}}
{{- define "le.zkPodHost" -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "le.zkName" .ctx) .index (include "le.zkHeadless" .ctx) .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/*
ZOO_SERVERS: one `server.<id>=<host>:2888:3888;2181` per ensemble pod, id = ordinal + 1.
The `;2181` client port is what ZooKeeper >= 3.5 needs in the server list for a plain
client port. With TLS the lines have no client part: the only client port is
secureClientPort, and no plain one is opened.
*/}}
{{- define "le.zooServers" -}}
{{- $servers := list }}
{{- $clientPart := ternary "" ";2181" .Values.zookeeper.tls.enabled }}
{{- range $i := until (int .Values.zookeeper.replicas) }}
{{- $host := include "le.zkPeerHost" (dict "ctx" $ "index" $i) }}
{{- $servers = append $servers (printf "server.%d=%s:2888:3888%s" (add1 $i) $host $clientPart) }}
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
{{- if and .Values.zookeeper.tls.enabled .Values.zookeeper.tls.existingClientSecret (not .Values.zookeeper.tls.existingSecret) }}
{{- fail "zookeeper.tls.existingClientSecret needs zookeeper.tls.existingSecret: the chart's generated CA would not trust a client certificate it did not sign. Set both (one CA), or neither" }}
{{- end }}
{{- if and .Values.externalZookeeper.hosts .Values.externalZookeeper.tls.enabled (not .Values.externalZookeeper.tls.existingSecret) }}
{{- fail "externalZookeeper.tls.enabled needs externalZookeeper.tls.existingSecret: a Secret with ca.crt (the CA of the ensemble's certificates) and tls.crt, tls.key (the sidecars' client certificate)" }}
{{- end }}
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
