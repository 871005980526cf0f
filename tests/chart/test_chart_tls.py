"""TLS to ZooKeeper as the chart renders it (issue 22): on by default, the ensemble's client
port TLS only, the sidecars given a CA, a client certificate and the secure port, an
existing Secret (cert-manager's) taken instead of the generated ones, and an external
ensemble left in plain text unless asked.

Offline renders (chart_support's) name an existing server Secret where the chart would
generate the certificates; generating and keeping them needs a cluster to read
(test_chart_lifecycle.py), and the real node proves the ensemble serves TLS only
(tests/node/test_chart_zookeeper_tls.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chart_support import (
    CHART_DIR,
    OFFLINE_TLS_SECRET,
    RELEASE,
    HelmError,
    Manifests,
    env_of,
    helm,
    with_offline_credentials,
)

ZK = f"{RELEASE}-zookeeper"
SIDECAR_TLS = {"ZK_TLS_CA": "/etc/leader-sidecar/zk-tls/ca.crt",
               "ZK_TLS_CERT": "/etc/leader-sidecar/zk-tls/tls.crt",
               "ZK_TLS_KEY": "/etc/leader-sidecar/zk-tls/tls.key"}


def zk_pod(manifests: Manifests) -> dict[str, Any]:
    spec: dict[str, Any] = manifests.get("StatefulSet", ZK)["spec"]["template"]["spec"]
    return spec


def zk_container(manifests: Manifests) -> dict[str, Any]:
    container: dict[str, Any] = zk_pod(manifests)["containers"][0]
    return container


def cfg_extra(manifests: Manifests) -> dict[str, str]:
    entries = env_of(zk_container(manifests))["ZOO_CFG_EXTRA"].split()
    return dict(entry.split("=", 1) for entry in entries)


def volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in pod["volumes"] if v["name"] == name)
    return found


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def test_the_ensemble_serves_clients_over_tls_only_by_default(default: Manifests) -> None:
    extra = cfg_extra(default)
    assert extra["secureClientPort"] == "2281"
    assert extra["serverCnxnFactory"] == "org.apache.zookeeper.server.NettyServerCnxnFactory"
    assert extra["ssl.clientAuth"] == "need"
    assert extra["ssl.keyStore.type"] == extra["ssl.trustStore.type"] == "PEM"
    assert "clientPort" not in extra
    container = zk_container(default)
    assert not any(s.endswith(";2181") for s in env_of(container)["ZOO_SERVERS"].split())
    assert [p["containerPort"] for p in container["ports"]] == [2281, 2888, 3888]
    # No 2181 anywhere for the ensemble: Services, policy, probes.
    for kind in ("Service", "NetworkPolicy"):
        for obj in default.of_kind(kind):
            assert "2181" not in str(obj), obj["metadata"]["name"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "zk-4lw" in " ".join(container[probe]["exec"]["command"])


QUORUM_TLS = {"sslQuorum": "true",
              "ssl.quorum.keyStore.location": "/run/zookeeper-tls/keystore.pem",
              "ssl.quorum.keyStore.type": "PEM",
              "ssl.quorum.trustStore.location": "/etc/zookeeper/tls/ca.crt",
              "ssl.quorum.trustStore.type": "PEM",
              "ssl.quorum.hostnameVerification": "true"}


def test_the_servers_speak_tls_to_each_other_by_default(default: Manifests) -> None:
    extra = cfg_extra(default)
    # The same key store (the servers' certificate as TLS client and server) and CA as the
    # client port; the peers' names checked; no plaintext peer accepted.
    assert {k: extra.get(k) for k in QUORUM_TLS} == QUORUM_TLS
    assert extra["ssl.quorum.keyStore.location"] == extra["ssl.keyStore.location"]
    assert extra["ssl.quorum.trustStore.location"] == extra["ssl.trustStore.location"]
    assert "portUnification" not in extra
    # Still the ports the peers (and the NetworkPolicy) know.
    servers = env_of(zk_container(default))["ZOO_SERVERS"].split()
    assert all(":2888:3888" in s for s in servers)


def test_quorum_tls_can_be_left_off_or_its_name_check_switched_off(
    render: Callable[..., Manifests],
) -> None:
    plain = cfg_extra(render({"zookeeper": {"tls": {"quorum": False}}}))
    assert plain["secureClientPort"] == "2281"
    assert not [k for k in plain if k.startswith("ssl.quorum.") or k in (
        "sslQuorum", "portUnification")]
    unchecked = cfg_extra(render({"zookeeper": {"tls": {"quorumHostnameVerification": False}}}))
    assert unchecked["sslQuorum"] == "true"
    assert unchecked["ssl.quorum.hostnameVerification"] == "false"
    # Without TLS to clients the quorum is plain too.
    off = cfg_extra(render({"zookeeper": {"tls": {"enabled": False, "quorum": True}}}))
    assert not [k for k in off if "ssl" in k.lower() or k == "portUnification"]


def test_port_unification_is_the_rolling_path_from_a_plain_quorum(
    render: Callable[..., Manifests],
) -> None:
    # Step 1 of the upgrade: still plain to the peers, but TLS peers accepted.
    first = cfg_extra(render({"zookeeper": {"tls": {"quorum": False,
                                                    "quorumPortUnification": True}}}))
    assert first["portUnification"] == "true" and "sslQuorum" not in first
    assert first["ssl.quorum.keyStore.location"] == "/run/zookeeper-tls/keystore.pem"
    assert first["ssl.quorum.trustStore.type"] == "PEM"
    # Step 2: TLS to the peers, plaintext ones still accepted; each key once.
    second = render({"zookeeper": {"tls": {"quorumPortUnification": True}}})
    extra = cfg_extra(second)
    assert extra["portUnification"] == extra["sslQuorum"] == "true"
    entries = env_of(zk_container(second))["ZOO_CFG_EXTRA"].split()
    assert len(entries) == len({e.split("=", 1)[0] for e in entries})


def test_the_servers_key_store_is_made_in_memory_from_the_secret(default: Manifests) -> None:
    pod = zk_pod(default)
    container = zk_container(default)
    script = container["args"][0]
    # ZooKeeper's PEM reader takes PKCS#8 keys only; sprig and cert-manager write PKCS#1.
    assert "openssl pkcs8 -topk8 -nocrypt -in /etc/zookeeper/tls/tls.key" in script
    assert script.index("openssl pkcs8") < script.index("exec /docker-entrypoint.sh")
    extra = cfg_extra(default)
    store = extra["ssl.keyStore.location"]
    assert store.startswith(mounts(container)["keystore"]["mountPath"] + "/")
    assert volume(pod, "keystore")["emptyDir"]["medium"] == "Memory"
    assert extra["ssl.trustStore.location"] == "/etc/zookeeper/tls/ca.crt"
    tls = volume(pod, "tls")["secret"]
    assert tls["secretName"] == OFFLINE_TLS_SECRET and tls["defaultMode"] == 0o440
    assert mounts(container)["tls"]["readOnly"] is True
    # The servers roll when their certificate changes.
    annotations = default.get("StatefulSet", ZK)["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/zk-tls"]) == 64


def test_zk_4lw_speaks_tls_with_a_client_certificate(default: Manifests) -> None:
    script = default.get("ConfigMap", f"{ZK}-scripts")["data"]["zk-4lw"]
    assert "openssl s_client -connect \"$host:2281\"" in script
    for option in ("-verify_return_error", "-CAfile /etc/zookeeper/tls/ca.crt",
                   "-cert /etc/zookeeper/tls/tls.crt", "-key /etc/zookeeper/tls/tls.key"):
        assert option in script
    assert "nc " not in script


def test_zk_4lw_uses_the_plain_port_without_tls(render: Callable[..., Manifests]) -> None:
    manifests = render({"zookeeper": {"tls": {"enabled": False}}})
    script = manifests.get("ConfigMap", f"{ZK}-scripts")["data"]["zk-4lw"]
    assert 'nc -w 2 "$host" 2181' in script and "openssl" not in script
    container = zk_container(manifests)
    assert "secureClientPort" not in cfg_extra(manifests)
    assert "openssl" not in container["args"][0]
    assert {v["name"] for v in zk_pod(manifests)["volumes"]}.isdisjoint({"tls", "keystore"})
    sidecar = manifests.container("leader-sidecar")
    assert not set(SIDECAR_TLS) & set(env_of(sidecar))
    assert env_of(sidecar)["ZK_HOSTS"].endswith(":2181")


def test_the_sidecar_alone_gets_the_client_certificate(default: Manifests) -> None:
    sidecar = default.container("leader-sidecar")
    env = env_of(sidecar)
    assert {k: env[k] for k in SIDECAR_TLS} == SIDECAR_TLS
    assert env["ZK_HOSTS"].endswith(":2281")
    mount = mounts(sidecar)["zk-tls"]
    assert mount["readOnly"] is True and mount["mountPath"] == "/etc/leader-sidecar/zk-tls"
    assert "zk-tls" not in mounts(default.container("app"))
    # With only existingSecret given, the sidecars use it too (one certificate, one CA).
    assert volume(default.app_pod, "zk-tls")["secret"]["secretName"] == OFFLINE_TLS_SECRET
    annotations = default.app["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/zk-tls"]) == 64


def test_an_existing_client_secret_goes_to_the_sidecars_and_the_quorum_test(
    render: Callable[..., Manifests],
) -> None:
    manifests = render({"zookeeper": {"tls": {"existingSecret": "zk-server",
                                              "existingClientSecret": "zk-client"}}})
    assert volume(zk_pod(manifests), "tls")["secret"]["secretName"] == "zk-server"
    assert volume(manifests.app_pod, "zk-tls")["secret"]["secretName"] == "zk-client"
    quorum = manifests.get("Pod", f"{RELEASE}-test-zookeeper-quorum")["spec"]
    assert volume(quorum, "tls")["secret"]["secretName"] == "zk-client"
    assert not [s for s in manifests.of_kind("Secret") if s["type"] == "kubernetes.io/tls"]


def test_a_client_secret_without_the_server_s_is_refused() -> None:
    # Straight to helm: the offline renders would name a server Secret.
    with pytest.raises(HelmError, match=r"existingClientSecret needs zookeeper\.tls\.existingSecret"):
        helm("template", RELEASE, str(CHART_DIR), values={
            "zookeeper": {"tls": {"existingClientSecret": "zk-client"}},
            "zkAuth": {"credentials": "sidecar:s3cret"}})


def test_an_external_ensemble_stays_plain_unless_asked(render: Callable[..., Manifests]
                                                      ) -> None:
    external = {"zookeeper": {"enabled": False}, "externalZookeeper": {"hosts": "zk:2181"}}
    sidecar = render(external).container("leader-sidecar")
    assert not set(SIDECAR_TLS) & set(env_of(sidecar))
    assert "zk-tls" not in mounts(sidecar)
    # The local control plane's flow: the chart's ensemble deployed (TLS), the sidecars on
    # a plaintext external one.
    both = render({"externalZookeeper": {"hosts": "127.0.0.1:2181"}})
    assert not set(SIDECAR_TLS) & set(env_of(both.container("leader-sidecar")))
    assert cfg_extra(both)["secureClientPort"] == "2281"
    with pytest.raises(HelmError, match=r"externalZookeeper\.tls\.existingSecret"):
        render({**external, "externalZookeeper": {"hosts": "zk:2281",
                                                  "tls": {"enabled": True}}})
    asked = render({**external, "externalZookeeper": {
        "hosts": "zk:2281", "tls": {"enabled": True, "existingSecret": "ext"}}})
    sidecar = asked.container("leader-sidecar")
    assert {k: env_of(sidecar)[k] for k in SIDECAR_TLS} == SIDECAR_TLS
    assert volume(asked.app_pod, "zk-tls")["secret"]["secretName"] == "ext"


def test_the_quorum_test_asks_every_server_over_tls(default: Manifests) -> None:
    quorum = default.get("Pod", f"{RELEASE}-test-zookeeper-quorum")["spec"]
    container = quorum["containers"][0]
    assert "/opt/leader-election/bin/zk-4lw srvr \"$host\"" in container["args"][0]
    assert mounts(container)["tls"]["mountPath"] == "/etc/zookeeper/tls"
    assert volume(quorum, "scripts")["configMap"]["name"] == f"{ZK}-scripts"


def test_notes_say_the_port_is_tls_only(render_raw: Callable[..., dict[str, str]]) -> None:
    notes = render_raw(with_offline_credentials({}))["leader-election/templates/NOTES.txt"]
    assert ":2281, over TLS." in notes
    assert "zk-4lw srvr" in notes
