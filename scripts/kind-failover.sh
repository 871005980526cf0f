#!/usr/bin/env bash
# make kind-failover: measure failovers on the cluster of `make kind-up`.
#
#  1. graceful: delete the leader pod; its sidecar sees the deletion and leaves first.
#  2. forced: `--grace-period=0 --force`. Not a crash: the pod object goes at once, the
#     sidecar's watch sees it gone and leaves, and the kubelet still stops the containers
#     with SIGTERM (it gives them a minimum grace period).
#  3. crash: SIGKILL of the leader's sidecar container through the node's CRI (kind:
#     `docker exec <node> crictl stop --timeout 0`; TARGET=local: the local node's
#     runtime); a follower takes over once ZooKeeper expires the dead sidecar's session
#     (election.sessionTimeoutSeconds), and the kubelet restarts the container.
#  4. ZooKeeper leader: delete the ensemble's leader; the ensemble elects a new one and
#     the sidecars' sessions move to the remaining servers.
#
# A failover counts as done when exactly one other pod carries role=leader AND the leader
# Service's ready endpoints are exactly that pod: what a client of the Service sees.
# TARGET=local measures the release on the cluster that $KUBECONFIG names (its current
# context; `make cluster-up NODE=real`) instead of the kind cluster's context.
# Settings (environment): TARGET (kind), KIND_CLUSTER_NAME (leader-sidecar), RELEASE (demo),
# NAMESPACE (leader-election), ROLE_LABEL (role), FAILOVER_TIMEOUT (120 seconds).
set -euo pipefail

for tool in kubectl $([[ ${TARGET:-kind} == kind ]] && echo docker); do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "kind-failover: '$tool' is required but not found on PATH; install it and retry" >&2
        exit 127
    fi
done

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

CLUSTER=${KIND_CLUSTER_NAME:-leader-sidecar}
RELEASE=${RELEASE:-demo}
NAMESPACE=${NAMESPACE:-leader-election}
ROLE_LABEL=${ROLE_LABEL:-role}
TIMEOUT=${FAILOVER_TIMEOUT:-120}
case ${TARGET:-kind} in
    kind) WHERE="context kind-$CLUSTER"; K=(kubectl --context "kind-$CLUSTER" --namespace "$NAMESPACE") ;;
    local) WHERE="KUBECONFIG ${KUBECONFIG:-unset}"; K=(kubectl --namespace "$NAMESPACE") ;;
    *) echo "kind-failover: TARGET is kind or local, not '$TARGET'" >&2; exit 2 ;;
esac
APP="app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=app"
ZK="app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=zookeeper"
LEADER_SVC="app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=leader-service"

die() { echo "kind-failover: $*" >&2; exit 1; }
# Sub-second wall clock: bash 5's EPOCHREALTIME, else whole seconds from date.
now() { if [[ -n ${EPOCHREALTIME:-} ]]; then echo "${EPOCHREALTIME/,/.}"; else date +%s; fi; }
since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.2f", end - start }'; }

app_leaders() {
    "${K[@]}" get pods -l "$APP,$ROLE_LABEL=leader" \
        -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null || true
}
service_targets() {
    "${K[@]}" get endpointslices -l "kubernetes.io/service-name=$SERVICE" \
        -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.targetRef.name}{"\n"}{end}' 2>/dev/null || true
}
# The one leader, if the labels and the Service agree on exactly one pod; else nothing.
consistent_leader() {
    local leaders targets
    leaders=$(app_leaders | sort -u | sed '/^$/d')
    targets=$(service_targets | sort -u | sed '/^$/d')
    if [[ -n $leaders && $leaders != *$'\n'* && $leaders == "$targets" ]]; then
        echo "$leaders"
    fi
}
# The chart's zk-4lw asks the server over its client port, TLS only by default.
zk_mode() {
    { "${K[@]}" exec --request-timeout=5s "$1" -c zookeeper -- \
        /opt/leader-election/bin/zk-4lw srvr 2>/dev/null || true; } | sed -n 's/^Mode: //p'
}
zk_leader() {
    local pod
    for pod in $("${K[@]}" get pods -l "$ZK" -o jsonpath='{.items[*].metadata.name}' || true); do
        if [[ $(zk_mode "$pod") == leader ]]; then echo "$pod"; return; fi
    done
}

# Wait until the labels and the Service agree on one leader other than $1 ("" = any).
wait_for_leader_other_than() {
    local old=$1 start=$2 leader
    while true; do
        leader=$(consistent_leader)
        if [[ -n $leader && $leader != "$old" ]]; then echo "$leader"; return; fi
        (( $(awk -v s="$(since "$start")" -v t="$TIMEOUT" 'BEGIN { print (s > t) }') )) \
            && die "no new leader within ${TIMEOUT}s (labels: $(app_leaders | xargs), Service: $(service_targets | xargs))"
        sleep 0.1
    done
}
settle() {
    "${K[@]}" rollout status "$STS_APP" --timeout "${TIMEOUT}s" >/dev/null
    # A crashed sidecar is back once its pod is Ready again (it is a candidate again).
    "${K[@]}" wait --for=condition=Ready pod -l "$APP" --timeout "${TIMEOUT}s" >/dev/null
    [[ -z ${STS_ZK:-} ]] || "${K[@]}" rollout status "$STS_ZK" --timeout "${TIMEOUT}s" >/dev/null
    local start; start=$(now)
    wait_for_leader_other_than "" "$start" >/dev/null
}

SERVICE=$("${K[@]}" get services -l "$LEADER_SVC" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null) \
    || die "no leader Service of release $RELEASE in namespace $NAMESPACE ($WHERE); run make kind-up first"
[[ -n $SERVICE ]] || die "no leader Service of release $RELEASE in namespace $NAMESPACE; run make kind-up first"
STS_APP=$("${K[@]}" get statefulsets -l "$APP" -o name)
STS_ZK=$("${K[@]}" get statefulsets -l "$ZK" -o name)
results=()

echo "waiting for a settled release..."
settle

# SIGKILL of the sidecar container of pod $1, as a crash (or the OOM killer) would.
kill_sidecar() {
    local pod=$1 node cid
    if [[ ${TARGET:-kind} == local ]]; then
        (cd "$ROOT" && "${PYTHON:-python3}" -m sidecar.lab.cluster kill \
            --kubeconfig "$KUBECONFIG" --namespace "$NAMESPACE" --pod "$pod")
    else
        node=$("${K[@]}" get pod "$pod" -o jsonpath='{.spec.nodeName}')
        cid=$("${K[@]}" get pod "$pod" \
            -o jsonpath='{.status.initContainerStatuses[?(@.name=="leader-sidecar")].containerID}{.status.containerStatuses[?(@.name=="leader-sidecar")].containerID}')
        docker exec "$node" crictl stop --timeout 0 "${cid#*://}" >/dev/null
    fi
}

# 1 to 3: the application leader goes away.
for mode in graceful forced crash; do
    old=$(consistent_leader)
    case $mode in
        graceful)
            echo "deleting leader $old (graceful: its sidecar leaves on the deletion)"
            start=$(now)
            "${K[@]}" delete pod "$old" --wait=false >/dev/null
            label="graceful delete" ;;
        forced)
            echo "force-deleting leader $old (its sidecar sees the pod gone and leaves)"
            start=$(now)
            "${K[@]}" delete pod "$old" --grace-period=0 --force --wait=false >/dev/null 2>&1
            label="forced delete (--grace-period=0)" ;;
        crash)
            echo "killing the sidecar of leader $old (crash: its session must expire)"
            start=$(now)
            kill_sidecar "$old"
            label="crash (sidecar SIGKILLed)" ;;
    esac
    new=$(wait_for_leader_other_than "$old" "$start")
    took=$(since "$start")
    echo "  new leader $new after ${took}s"
    results+=("$(printf '%-34s %8ss   %s -> %s' "$label" "$took" "$old" "$new")")
    settle
done

# 4: the ZooKeeper leader goes away.
if [[ -n $STS_ZK ]]; then
    app_before=$(consistent_leader)
    zk_old=$(zk_leader)
    [[ -n $zk_old ]] || die "no ZooKeeper server reports Mode: leader"
    # The pod made again under the same name can win the election (the highest server id
    # wins a tie): a new leader is a pod with another uid, not another name.
    zk_old_uid=$("${K[@]}" get pod "$zk_old" -o jsonpath='{.metadata.uid}')
    echo "deleting ZooKeeper leader $zk_old"
    start=$(now)
    "${K[@]}" delete pod "$zk_old" --wait=false >/dev/null
    while true; do
        zk_new=$(zk_leader)
        if [[ -n $zk_new ]]; then
            zk_new_uid=$("${K[@]}" get pod "$zk_new" -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
            [[ -n $zk_new_uid && $zk_new_uid != "$zk_old_uid" ]] && break
        fi
        (( $(awk -v s="$(since "$start")" -v t="$TIMEOUT" 'BEGIN { print (s > t) }') )) \
            && die "the ensemble elected no new leader within ${TIMEOUT}s"
        sleep 0.2
    done
    zk_took=$(since "$start")
    app_after=$(wait_for_leader_other_than "" "$start")
    app_took=$(since "$start")
    echo "  ensemble leader $zk_new after ${zk_took}s; application leader $app_after"
    results+=("$(printf '%-34s %8ss   %s -> %s' "ZooKeeper leader deleted" "$zk_took" "$zk_old" "$zk_new")")
    results+=("$(printf '%-34s %8ss   %s -> %s' "  app leader consistent again" "$app_took" "$app_before" "$app_after")")
    settle
fi

echo
printf '%-34s %9s   %s\n' "failover" "time" "leader"
printf '%s\n' "${results[@]}"
echo
"${K[@]}" get pods -l "app.kubernetes.io/instance=$RELEASE" -L "$ROLE_LABEL"
