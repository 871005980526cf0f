"""What ties the pieces together: names, labels, ports and environment that must agree
across objects for the election, the role label and the leader Service to work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chart_support import (
    NAMESPACE,
    NEWEST,
    OFFLINE_CREDENTIALS,
    OLDEST_NATIVE,
    OLDEST_PLAIN,
    RELEASE,
    Manifests,
    env_of,
)

ZK_DOMAIN = f"{NAMESPACE}.svc.cluster.local"


def zk_client_port(values: dict[str, Any]) -> int:
    """The ensemble's one client port: TLS only (2281) by default, plain 2181 without TLS."""
    return 2281 if values.get("zookeeper", {}).get("tls", {}).get("enabled", True) else 2181


def app_selector(manifests: Manifests) -> dict[str, str]:
    selector: dict[str, str] = manifests.app["spec"]["selector"]["matchLabels"]
    return selector


def test_leader_service_selects_the_label_the_sidecar_writes(combination: Manifests) -> None:
    service = combination.get("Service", f"{RELEASE}-leader")
    role_label = env_of(combination.container("leader-sidecar"))["ROLE_LABEL"]
    assert role_label == "role"  # the sidecar's default, what `kubectl -L role` shows
    assert service["spec"]["selector"] == {**app_selector(combination), role_label: "leader"}
    pod_labels = combination.app["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in app_selector(combination).items())
    # The pods must not carry the role in their template: it belongs to the sidecar.
    assert role_label not in pod_labels


def test_a_custom_role_label_reaches_both_the_sidecar_and_the_service(
    render: Callable[..., Manifests],
) -> None:
    manifests = render({"election": {"roleLabel": "example.com/role"}})
    assert env_of(manifests.container("leader-sidecar"))["ROLE_LABEL"] == "example.com/role"
    selector = manifests.get("Service", f"{RELEASE}-leader")["spec"]["selector"]
    assert selector["example.com/role"] == "leader"


def test_leader_service_targets_the_application_port(combination: Manifests) -> None:
    service = combination.get("Service", f"{RELEASE}-leader")
    (port,) = service["spec"]["ports"]
    app_ports = {p["name"]: p["containerPort"] for p in combination.container("app")["ports"]}
    assert port["targetPort"] in app_ports
    assert app_ports[port["targetPort"]] == combination.values.get("app", {}).get("port", 8080)


def test_zk_hosts_names_the_client_service_and_port(combination: Manifests) -> None:
    zk_hosts = env_of(combination.container("leader-sidecar"))["ZK_HOSTS"]
    if not combination.values.get("zookeeper", {}).get("enabled", True):
        assert zk_hosts == combination.values["externalZookeeper"]["hosts"]
        assert not combination.of_kind("StatefulSet")[1:], "no ensemble with an external one"
        return
    client = combination.get("Service", f"{RELEASE}-zookeeper")
    (port,) = client["spec"]["ports"]
    assert zk_hosts == f"{RELEASE}-zookeeper.{ZK_DOMAIN}:{port['port']}"
    assert port["port"] == zk_client_port(combination.values)
    zk = combination.get("StatefulSet", f"{RELEASE}-zookeeper")
    assert client["spec"]["selector"] == zk["spec"]["selector"]["matchLabels"]
    zk_ports = {
        p["name"]: p["containerPort"]
        for p in zk["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert zk_ports[port["targetPort"]] == zk_client_port(combination.values)


def test_external_ensemble_requires_hosts(render: Callable[..., Manifests]) -> None:
    with pytest.raises(Exception, match=r"externalZookeeper\.hosts is required"):
        render({"zookeeper": {"enabled": False}})


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
@pytest.mark.parametrize("servers", [1, 3, 5])
def test_zoo_servers_names_every_server_through_a_service_of_its_own(
    servers: int, tls: bool, render: Callable[..., Manifests]
) -> None:
    manifests = render({"zookeeper": {"replicas": servers, "tls": {"enabled": tls}}})
    zk = manifests.get("StatefulSet", f"{RELEASE}-zookeeper")
    headless = manifests.get("Service", zk["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # Peers must resolve each other before any is ready (readiness needs a quorum).
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"] == zk["spec"]["selector"]["matchLabels"]
    client_port = 2281 if tls else 2181
    assert {p["port"] for p in headless["spec"]["ports"]} == {client_port, 2888, 3888}
    assert zk["spec"]["replicas"] == servers
    assert zk["spec"]["podManagementPolicy"] == "Parallel"
    # Each server is dialled at a Service of its own: an address that outlives the pod's IP
    # (a pod made again has a new one, which DNS caches hide for up to 30 s).
    for i in range(servers):
        own = manifests.get("Service", f"{RELEASE}-zookeeper-{i}")
        assert own["spec"].get("clusterIP") != "None"
        assert own["spec"]["publishNotReadyAddresses"] is True
        assert own["spec"]["selector"] == {
            **zk["spec"]["selector"]["matchLabels"],
            "statefulset.kubernetes.io/pod-name": f"{RELEASE}-zookeeper-{i}"}
        assert {p["port"] for p in own["spec"]["ports"]} == {2888, 3888}
    assert not manifests.has("Service", f"{RELEASE}-zookeeper-{servers}")
    container = zk["spec"]["template"]["spec"]["containers"][0]
    entries = env_of(container)["ZOO_SERVERS"].split()
    assert entries == [
        f"server.{i + 1}={RELEASE}-zookeeper-{i}.{ZK_DOMAIN}"
        # With TLS no client part: the plain client port stays closed.
        f":2888:3888{'' if tls else ';2181'}"
        for i in range(servers)
    ]


def test_zookeeper_myid_comes_from_the_pod_ordinal(default: Manifests) -> None:
    # myid = ordinal + 1 must match the server.<id> numbering of ZOO_SERVERS.
    container = default.get("StatefulSet", f"{RELEASE}-zookeeper")["spec"]["template"]["spec"][
        "containers"
    ][0]
    script = " ".join(container["command"] + container["args"])
    assert "ZOO_MY_ID=$(( ${HOSTNAME##*-} + 1 ))" in script
    assert "exec /docker-entrypoint.sh zkServer.sh start-foreground" in script


def test_zookeeper_probes_use_four_letter_words_that_are_whitelisted(
    render: Callable[..., Manifests],
) -> None:
    for servers, modes in [(3, "leader|follower"), (1, "standalone")]:
        zk = render({"zookeeper": {"replicas": servers}}).get("StatefulSet", f"{RELEASE}-zookeeper")
        container = zk["spec"]["template"]["spec"]["containers"][0]
        whitelist = env_of(container)["ZOO_4LW_COMMANDS_WHITELIST"].split(",")
        assert {"ruok", "srvr", "mntr"} <= set(whitelist)
        liveness = " ".join(container["livenessProbe"]["exec"]["command"])
        readiness = " ".join(container["readinessProbe"]["exec"]["command"])
        # Through zk-4lw (the scripts ConfigMap), which speaks TLS when the port is TLS.
        assert "zk-4lw ruok" in liveness and "imok" in liveness
        # Not ready without a quorum: only a server in these modes is serving.
        assert "zk-4lw srvr" in readiness and f"^Mode: ({modes})$" in readiness


def test_zookeeper_image_is_the_official_one_pinned_to_3_9(default: Manifests) -> None:
    zk = default.get("StatefulSet", f"{RELEASE}-zookeeper")["spec"]["template"]["spec"]
    images = {c["image"] for c in zk["containers"] + zk["initContainers"]}
    (image,) = images
    repository, tag = image.rsplit(":", 1)
    assert repository == "zookeeper"
    assert tag.startswith("3.9.") and tag.count(".") == 2


def test_zookeeper_heap_fits_its_memory_limit(default: Manifests) -> None:
    container = default.get("StatefulSet", f"{RELEASE}-zookeeper")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert env_of(container)["JVMFLAGS"].startswith("-Xms256m -Xmx256m")
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) >= 256 * 1.5


def test_zookeeper_writes_no_heap_dump_into_its_read_only_working_directory(
    default: Manifests,
) -> None:
    # zkServer.sh starts the JVM with -XX:+HeapDumpOnOutOfMemoryError and no dump path:
    # the dump would go to the image's working directory, on the read-only root filesystem.
    # JVMFLAGS comes later on the command line, and the JVM's last flag wins.
    container = default.get("StatefulSet", f"{RELEASE}-zookeeper")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "-XX:-HeapDumpOnOutOfMemoryError" in env_of(container)["JVMFLAGS"].split()


def test_sidecar_cpu_request_covers_its_liveness_timeout(default: Manifests) -> None:
    # 20m gave the sidecar 2 % of a core under contention against a 3 s liveness timeout:
    # a busy node could restart a healthy sidecar (and hand over the leadership).
    sidecar = default.container("leader-sidecar")
    cpu = sidecar["resources"]["requests"]["cpu"]
    assert cpu.endswith("m") and int(cpu[:-1]) >= 50, cpu
    assert "cpu" not in sidecar["resources"].get("limits", {}), "no CPU throttling"


def test_zookeeper_writes_only_to_mounted_volumes(combination: Manifests) -> None:
    if not combination.has("StatefulSet", f"{RELEASE}-zookeeper"):
        return
    zk = combination.get("StatefulSet", f"{RELEASE}-zookeeper")
    pod = zk["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    # The image's entrypoint writes /conf/zoo.cfg and /data/myid; the JVM uses /tmp.
    assert set(mounts) >= {"/conf", "/data", "/logs", "/tmp"}
    # /conf is seeded with the image's own files (logback.xml) before ZooKeeper starts.
    (seed,) = pod["initContainers"]
    assert seed["command"] == ["cp", "-R", "/conf/.", "/seed-conf/"]
    assert {m["name"] for m in seed["volumeMounts"]} == {mounts["/conf"]}
    assert env_of(container)["ZOO_DATA_LOG_DIR"].startswith("/data/")
    claims = [c["metadata"]["name"] for c in zk["spec"].get("volumeClaimTemplates", [])]
    volumes = {v["name"]: v for v in pod["volumes"]}
    if combination.values.get("zookeeper", {}).get("persistence", {}).get("enabled", True):
        assert claims == [mounts["/data"]] and mounts["/data"] not in volumes
    else:
        assert not claims and "emptyDir" in volumes[mounts["/data"]]


def test_zookeeper_servers_spread_over_nodes_by_default(default: Manifests) -> None:
    # Never two servers on one node while the cluster has a node for each (a topology
    # spread with maxSkew 1), yet all of them on a single-node cluster (kind, minikube).
    zk = default.get("StatefulSet", f"{RELEASE}-zookeeper")
    pod = zk["spec"]["template"]["spec"]
    assert "affinity" not in pod
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["maxSkew"] == 1
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["labelSelector"]["matchLabels"] == zk["spec"]["selector"]["matchLabels"]
    # Nodes the servers cannot run on (a tainted control plane) are no domain to fill.
    assert spread["nodeTaintsPolicy"] == "Honor"


@pytest.mark.parametrize(
    ("mode", "field"),
    [
        ("soft", "preferredDuringSchedulingIgnoredDuringExecution"),
        ("hard", "requiredDuringSchedulingIgnoredDuringExecution"),
        ("none", None),
    ],
)
def test_zookeeper_anti_affinity(
    mode: str, field: str | None, render: Callable[..., Manifests]
) -> None:
    zk = render({"zookeeper": {"antiAffinity": mode}}).get("StatefulSet", f"{RELEASE}-zookeeper")
    assert "topologySpreadConstraints" not in zk["spec"]["template"]["spec"]
    affinity = zk["spec"]["template"]["spec"].get("affinity")
    if field is None:
        assert affinity is None
        return
    (term,) = affinity["podAntiAffinity"][field]
    term = term.get("podAffinityTerm", term)
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == zk["spec"]["selector"]["matchLabels"]


def test_pod_disruption_budgets_allow_one_pod_down(combination: Manifests) -> None:
    budgets = {p["metadata"]["name"]: p["spec"] for p in combination.of_kind("PodDisruptionBudget")}
    for name, workload in budgets.items():
        sts = combination.get("StatefulSet", name)
        assert workload["maxUnavailable"] == 1
        assert workload["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    expected = set()
    if combination.values.get("app", {}).get("pdb", {}).get("enabled", True):
        expected.add(RELEASE)
    zk_values = combination.values.get("zookeeper", {})
    if zk_values.get("enabled", True) and zk_values.get("pdb", {}).get("enabled", True):
        expected.add(f"{RELEASE}-zookeeper")
    assert set(budgets) == expected


@pytest.mark.parametrize("version", [OLDEST_NATIVE, NEWEST])
def test_pod_disruption_budgets_let_drains_evict_unhealthy_pods(
    version: str, render: Callable[..., Manifests]
) -> None:
    # A ZooKeeper outage makes every pod NotReady: with the default policy both budgets
    # then allow no disruption at all and block the drains that would repair it.
    budgets = render({}, version).of_kind("PodDisruptionBudget")
    assert len(budgets) == 2
    for budget in budgets:
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # Kubernetes < 1.27 has no such field (beta, on by default, in 1.27).
    for budget in render({"sidecar": {"native": False}}, OLDEST_PLAIN).of_kind(
        "PodDisruptionBudget"
    ):
        assert "unhealthyPodEvictionPolicy" not in budget["spec"]


def test_sidecar_environment_matches_the_pod(combination: Manifests) -> None:
    env = env_of(combination.container("leader-sidecar"))
    labels = combination.app["spec"]["template"]["metadata"]["labels"]
    assert env["ELECTION_NAME"] == labels["leader-election/name"] == RELEASE
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["ZK_SESSION_TIMEOUT"] == "6"
    assert combination.container("leader-sidecar")["args"] == ["run"]


def test_role_directory_is_shared_and_read_only_for_the_application(
    combination: Manifests,
) -> None:
    sidecar = combination.container("leader-sidecar")
    app = combination.container("app")
    role_dir = env_of(sidecar)["ROLE_DIR"]
    sidecar_mount = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == role_dir)
    app_mount = next(m for m in app["volumeMounts"] if m["mountPath"] == role_dir)
    assert sidecar_mount["name"] == app_mount["name"]
    assert not sidecar_mount.get("readOnly") and app_mount["readOnly"] is True
    volume = next(v for v in combination.app_pod["volumes"] if v["name"] == app_mount["name"])
    assert "emptyDir" in volume


def test_sidecar_is_native_by_default_and_plain_on_request(
    render: Callable[..., Manifests],
) -> None:
    native = render({})
    (sidecar,) = native.app_pod["initContainers"]
    assert sidecar["name"] == "leader-sidecar" and sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in native.app_pod["containers"]] == ["app"]
    plain = render({"sidecar": {"native": False}})
    assert "initContainers" not in plain.app_pod
    names = [c["name"] for c in plain.app_pod["containers"]]
    assert names == ["app", "leader-sidecar"]
    assert "restartPolicy" not in plain.container("leader-sidecar")


def test_sidecar_probes(combination: Manifests) -> None:
    sidecar = combination.container("leader-sidecar")
    env = env_of(sidecar)
    # Startup: the role file exists (the application then always finds one).
    assert sidecar["startupProbe"]["exec"]["command"] == ["test", "-s", f"{env['ROLE_DIR']}/role"]
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    ready = sidecar["readinessProbe"]["httpGet"]
    alive = sidecar["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and alive["path"] == "/healthz"
    assert ports[ready["port"]] == ports[alive["port"]] == int(env["HTTP_PORT"]) == 8081


def test_prestop_hook_makes_the_sidecar_leave_within_the_grace_period(
    combination: Manifests, render: Callable[..., Manifests]
) -> None:
    app = combination.container("app")
    sidecar_env = env_of(combination.container("leader-sidecar"))
    if not combination.values.get("app", {}).get("preStopLeave", True):
        assert "lifecycle" not in app
        assert "lifecycle" not in combination.container("leader-sidecar")
        return
    # The application waits (Kubernetes >= 1.30 has the `sleep` action); the sidecar
    # leaves through its control socket, never a port.
    assert app["lifecycle"]["preStop"] == {"sleep": {"seconds": 2}}
    if not combination.values.get("sidecar", {}).get("native", True):
        assert "lifecycle" not in render(combination.values, "1.29.0").container("app")
    sidecar = combination.container("leader-sidecar")
    assert sidecar["lifecycle"]["preStop"] == {"exec": {"command": ["leader-sidecar", "leave"]}}
    grace = combination.app_pod["terminationGracePeriodSeconds"]
    assert grace >= float(sidecar_env["ZK_SESSION_TIMEOUT"]) + 10


def test_too_short_grace_period_is_refused(render: Callable[..., Manifests]) -> None:
    too_short = {"app": {"terminationGracePeriodSeconds": 12}, "election": {}}
    with pytest.raises(Exception, match="terminationGracePeriodSeconds must be at least"):
        render(too_short)
    longer_session = {"election": {"sessionTimeoutSeconds": 25}}
    with pytest.raises(Exception, match="terminationGracePeriodSeconds must be at least"):
        render(longer_session)


def test_role_grants_exactly_what_the_sidecar_calls(combination: Manifests) -> None:
    (role,) = combination.of_kind("Role")
    app = combination.values.get("app", {})
    # Pods up to app.maxReplicas too: a pod added by `kubectl scale` must label itself.
    replicas = max(app.get("replicas", 3), app.get("maxReplicas", 10))
    rules = sorted(
        (
            tuple(r["apiGroups"]),
            tuple(r["resources"]),
            tuple(sorted(r["verbs"])),
            tuple(r.get("resourceNames", ())),
        )
        for r in role["rules"]
    )
    assert rules == sorted(
        [
            (("",), ("pods",), ("get", "list", "watch"), ()),
            (("",), ("pods",), ("patch",), tuple(f"{RELEASE}-{i}" for i in range(replicas))),
            (("",), ("events",), ("create", "patch"), ()),
        ]
    )
    assert not combination.of_kind("ClusterRole") and not combination.of_kind("ClusterRoleBinding")
    (binding,) = combination.of_kind("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    (subject,) = binding["subjects"]
    assert subject["name"] == combination.app_pod["serviceAccountName"]
    assert subject["namespace"] == NAMESPACE


def test_patch_can_be_opened_to_all_pods(render: Callable[..., Manifests]) -> None:
    (role,) = render({"rbac": {"restrictPatchToPodNames": False}}).of_kind("Role")
    patch = next(r for r in role["rules"] if r["verbs"] == ["patch"])
    assert "resourceNames" not in patch


def test_api_token_is_mounted_only_where_it_is_needed(combination: Manifests) -> None:
    needs_api = {"leader-sidecar", "one-leader"}
    for name, pod in combination.pod_specs():
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            has_token = "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
            assert has_token == (container["name"] in needs_api), (name, container["name"])
    for account in combination.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_zk_auth_comes_from_a_secret(render: Callable[..., Manifests]) -> None:
    created = render({"zkAuth": {"enabled": True, "credentials": "sidecar:s3cret"}})
    ref = env_of(created.container("leader-sidecar"))["ZK_AUTH"]["secretKeyRef"]
    secret = created.get("Secret", ref["name"])
    assert secret["stringData"] == {ref["key"]: "sidecar:s3cret"}
    existing = render({"zkAuth": {"enabled": True, "existingSecret": "my-zk-creds"}})
    ref = env_of(existing.container("leader-sidecar"))["ZK_AUTH"]["secretKeyRef"]
    assert ref == {"name": "my-zk-creds", "key": "credentials"}
    assert not existing.of_kind("Secret")
    # On by default, with credentials generated at install and kept across upgrades and
    # reinstalls by `lookup`, which needs a cluster: test_chart_lifecycle.py checks that
    # part, and that a render without a cluster refuses to generate them (the renders here
    # give chart_support.OFFLINE_CREDENTIALS).
    default = render({})
    ref = env_of(default.container("leader-sidecar"))["ZK_AUTH"]["secretKeyRef"]
    assert default.get("Secret", ref["name"])["stringData"][ref["key"]] == OFFLINE_CREDENTIALS
    assert "ZK_AUTH" not in env_of(render({"zkAuth": {"enabled": False}}).container("leader-sidecar"))


def test_network_policy_lets_only_the_app_and_the_ensemble_reach_zookeeper(
    render: Callable[..., Manifests],
) -> None:
    assert not render({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy")
    manifests = render({})  # on by default
    policy = manifests.get("NetworkPolicy", f"{RELEASE}-zookeeper")
    zk_labels = manifests.get("StatefulSet", f"{RELEASE}-zookeeper")["spec"]["selector"][
        "matchLabels"
    ]
    assert policy["spec"]["podSelector"]["matchLabels"] == zk_labels
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed: dict[int, list[dict[str, str]]] = {}
    for rule in policy["spec"]["ingress"]:
        assert all(set(peer) == {"podSelector"} for peer in rule["from"]), "pods only"
        for port in rule["ports"]:
            allowed.setdefault(port["port"], []).extend(
                peer["podSelector"]["matchLabels"] for peer in rule["from"]
            )
    quorum_test = manifests.get("Pod", f"{RELEASE}-test-zookeeper-quorum")["metadata"]["labels"]
    assert allowed[2888] == allowed[3888] == [zk_labels]
    assert 2181 not in allowed, "the plain client port is off with TLS (the default)"
    assert sorted(map(str, allowed[2281])) == sorted(
        map(str, [zk_labels, app_selector(manifests), select(quorum_test, zk_labels)])
    )
    external = {"zookeeper": {"enabled": False}, "externalZookeeper": {"hosts": "zk:2181"}}
    kinds = render(external).of_kind("NetworkPolicy")
    names = sorted(p["metadata"]["name"] for p in kinds)
    assert names == [f"{RELEASE}-app", f"{RELEASE}-tests"], "no ensemble of ours"


def test_network_policy_admits_the_sidecar_port_only_from_the_release_and_metrics(
    render: Callable[..., Manifests],
) -> None:
    manifests = render({})
    policy = manifests.get("NetworkPolicy", f"{RELEASE}-app")
    assert policy["spec"]["podSelector"]["matchLabels"] == app_selector(manifests)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    app_rule, sidecar_rule = policy["spec"]["ingress"]
    assert app_rule == {"ports": [{"port": 8080, "protocol": "TCP"}]}, "the app stays open"
    assert sidecar_rule["ports"] == [{"port": 8081, "protocol": "TCP"}]
    assert sidecar_rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]
    extra = [{"ports": [{"port": 9000, "protocol": "TCP"}]}]
    custom = render({"networkPolicy": {"metricsNamespaceSelector": None, "extraAppIngress": extra}})
    rules = custom.get("NetworkPolicy", f"{RELEASE}-app")["spec"]["ingress"]
    assert rules[1]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}}
    ]
    assert rules[2:] == extra


def select(labels: dict[str, str], like: dict[str, str]) -> dict[str, str]:
    """The labels of `labels` with the keys of a selector like `like`."""
    return {key: labels[key] for key in like}


def test_demo_app_is_the_default_application(combination: Manifests) -> None:
    app = combination.container("app")
    sidecar = combination.container("leader-sidecar")
    custom = combination.values.get("app", {}).get("image", {}).get("repository")
    if custom:
        assert app["image"] == f"{custom}:{combination.values['app']['image']['tag']}"
        assert "args" not in app
        return
    assert app["image"] == sidecar["image"]
    role_dir = env_of(sidecar)["ROLE_DIR"]
    assert app["args"] == ["demo-app", "--port", "8080", "--role-dir", role_dir]


def test_helm_tests_check_quorum_one_leader_and_the_leader_service(
    render: Callable[..., Manifests],
) -> None:
    manifests = render({})
    tests = {p["metadata"]["name"]: p for p in manifests.of_kind("Pod")}
    for pod in tests.values():
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
    quorum = tests[f"{RELEASE}-test-zookeeper-quorum"]["spec"]["containers"][0]["args"][0]
    for i in range(3):
        assert f"{RELEASE}-zookeeper-{i}.{RELEASE}-zookeeper-headless.{ZK_DOMAIN}" in quorum
    one_leader = tests[f"{RELEASE}-test-one-leader"]["spec"]
    env = env_of(one_leader["containers"][0])
    assert env["ROLE_LABEL"] == "role" and env["REPLICAS"] == "3"
    assert one_leader["serviceAccountName"] == manifests.app_pod["serviceAccountName"]
    leader = env_of(tests[f"{RELEASE}-test-leader-service"]["spec"]["containers"][0])
    assert leader["LEADER_URL"] == f"http://{RELEASE}-leader.{ZK_DOMAIN}:8080/"
    # A custom application answers in its own way: no leader-Service test for it, and no
    # quorum test without an ensemble of our own.
    custom = render({"app": {"image": {"repository": "shop", "tag": "1"}}})
    assert not custom.has("Pod", f"{RELEASE}-test-leader-service")
    external = render({"zookeeper": {"enabled": False}, "externalZookeeper": {"hosts": "zk:2181"}})
    assert not external.has("Pod", f"{RELEASE}-test-zookeeper-quorum")
    assert not render({"tests": {"enabled": False}}).of_kind("Pod")


def test_test_scripts_are_valid_python(render: Callable[..., Manifests]) -> None:
    for pod in render({}).of_kind("Pod"):
        container: dict[str, Any] = pod["spec"]["containers"][0]
        if container["command"][0] == "python3":
            compile(container["args"][0], pod["metadata"]["name"], "exec")


def test_application_probes_can_be_replaced_or_removed(render: Callable[..., Manifests]) -> None:
    # A custom image may not serve /healthz: null removes the demo app's probes.
    removed = render({"app": {"readinessProbe": None, "livenessProbe": None}})
    app = removed.container("app")
    assert "readinessProbe" not in app and "livenessProbe" not in app
    tcp = {"tcpSocket": {"port": "http"}}
    replaced = render({"app": {"readinessProbe": {"httpGet": None, **tcp}}})
    assert replaced.container("app")["readinessProbe"] == {**tcp, "periodSeconds": 5}
