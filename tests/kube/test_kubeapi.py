"""`sidecar/kubeapi.py` against the real kube-apiserver: every way a kubeconfig can carry
credentials that a sidecar may meet, one clear error for a kubeconfig that is not one, and
the kept-alive connection closed by the apiserver (issue 24, item 2)."""

from __future__ import annotations

import base64
import ssl
import urllib.parse
from pathlib import Path

import pytest
import yaml
from api_proxy import client_port

from sidecar.kubeapi import ApiError, KubeApi, KubernetesConfigError, load_connection
from sidecar.lab.faultproxy import FaultProxy

NOBODY = "leader-election/name=nobody"


def _inline(kubeconfig: Path, target: Path) -> Path:
    """The same kubeconfig with every file reference turned into `-data`."""
    document = yaml.safe_load(kubeconfig.read_text())
    for entry, keys in (("clusters", ("certificate-authority",)),
                        ("users", ("client-certificate", "client-key"))):
        for item in document.get(entry, []):
            body = item.get(entry[:-1], {})
            for key in keys:
                if body.get(key):
                    path = Path(body.pop(key))
                    path = path if path.is_absolute() else kubeconfig.parent / path
                    body[f"{key}-data"] = base64.b64encode(path.read_bytes()).decode()
    target.write_text(yaml.safe_dump(document))
    return target


def test_client_certificates_from_files_and_inline(kube_ns, tmp_path) -> None:
    admin = Path(kube_ns.cluster.kubeconfig)
    for kubeconfig in (admin, _inline(admin, tmp_path / "inline.yaml")):
        api = KubeApi(load_connection(str(kubeconfig)))
        try:
            pods = api.list_pods(kube_ns.namespace, "leader-election/name=nothing-here")
            assert pods["kind"] == "PodList" and pods["items"] == []
            with pytest.raises(ApiError) as refused:
                api.patch_pod(kube_ns.namespace, "no-such-pod", {"metadata": {}})
            assert refused.value.status == 404
        finally:
            api.close()


def test_token_file_is_read_before_every_request(kube_ns, kube_config, tmp_path) -> None:
    connection = load_connection(kube_config("app-0").kubeconfig)
    token_file = tmp_path / "token"
    token_file.write_text("not-a-token")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": connection.server,
                                               "certificate-authority": connection.ca_path}}],
        "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
    }))
    api = KubeApi(load_connection(str(kubeconfig)))
    try:
        with pytest.raises(ApiError) as refused:
            api.list_pods(kube_ns.namespace, "leader-election/name=x")
        assert refused.value.status == 401
        token_file.write_text(connection.token or "")  # the kubelet rotated it
        assert api.list_pods(kube_ns.namespace, "leader-election/name=x")["items"] == []
    finally:
        api.close()


@pytest.mark.parametrize("content", [
    "", "[]", "current-context: nowhere\n", "{not yaml", "current-context: c\ncontexts: 7\n",
])
def test_a_broken_kubeconfig_is_one_clear_error(tmp_path, content) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(content)
    with pytest.raises(KubernetesConfigError, match="no Kubernetes client configuration"):
        load_connection(str(kubeconfig))


def test_request_after_the_apiserver_closed_the_idle_connection(kube_ns, api_proxy) -> None:
    """kube-apiserver closes a kept-alive connection after 90 s without a request (and on
    shutdown). The next request must not fail for it: it goes out on a fresh connection.
    Before the fix it failed ("Remote end closed connection without response")."""
    proxy, kubeconfig = api_proxy
    api = KubeApi(load_connection(str(kubeconfig)))
    try:
        ns = kube_ns.namespace
        assert api.list_pods(ns, NOBODY)["items"] == []
        proxy.close_idle(client_port(api))
        assert api.list_pods(ns, NOBODY)["items"] == []
        assert proxy.accepted == 2, "sent on a fresh connection"
        assert api.list_pods(ns, NOBODY)["items"] == []
        assert proxy.accepted == 2, "and that one is kept alive"
    finally:
        api.close()


def test_request_racing_the_apiservers_close_is_sent_once_more(
    kube_ns, add_group_pod, api_proxy
) -> None:
    """The close crosses the request on the wire: the request never reaches the apiserver
    and the client sees its connection end before any byte of a reply. It is sent once
    more on a fresh connection, and reaches the apiserver once. Before the fix it failed
    ("Remote end closed connection without response")."""
    proxy, kubeconfig = api_proxy
    add_group_pod("app-0")
    api = KubeApi(load_connection(str(kubeconfig)))
    try:
        assert api.list_pods(kube_ns.namespace, NOBODY)["items"] == []
        proxy.drop_next_request(client_port(api))
        patched = api.patch_pod(kube_ns.namespace, "app-0",
                                {"metadata": {"labels": {"role": "follower"}}})
        assert patched["metadata"]["labels"]["role"] == "follower"
        assert proxy.accepted == 2
    finally:
        api.close()
    assert len(kube_ns.requests("patch", "pods")) == 1


def test_no_second_try_on_a_fresh_connection_or_after_a_timeout(
    kube_ns, add_group_pod, api_proxy
) -> None:
    """Only a kept-alive connection that the server closed is worth a second try: a fresh
    connection that fails (the apiserver is not back) and a reply that does not come in
    time (the request may be in the works) are the caller's to retry, with its backoff."""
    proxy, kubeconfig = api_proxy
    add_group_pod("app-0")
    api = KubeApi(load_connection(str(kubeconfig)), timeout=(2.0, 1.0))
    try:
        proxy.refusing = True
        with pytest.raises(OSError):
            api.list_pods(kube_ns.namespace, NOBODY)
        assert proxy.accepted == 1
        proxy.refusing = False
        assert api.list_pods(kube_ns.namespace, NOBODY)["items"] == []
        assert proxy.accepted == 2
        proxy.stalled = True
        with pytest.raises(TimeoutError):
            api.patch_pod(kube_ns.namespace, "app-0", {"metadata": {"labels": {"x": "1"}}})
        assert proxy.accepted == 2, "not sent again"
    finally:
        proxy.stalled = False
        api.close()
    assert len(kube_ns.requests("patch", "pods")) == 1


def test_tls_server_name_checks_the_certificate_against_the_apiserver_not_the_proxy(
        kube_ns, tmp_path) -> None:
    # A proxy on another loopback address, which the serving certificate does not name
    # (the namespaced soak's sidecars reach the apiserver this way, through a bridge).
    upstream = urllib.parse.urlsplit(kube_ns.cluster.server())
    proxy = FaultProxy(int(upstream.port or 443), listen_host="127.0.0.2")
    admin = yaml.safe_load(Path(kube_ns.cluster.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    cluster["server"] = f"https://127.0.0.2:{proxy.port}"
    try:
        # No name: the proxy's address is checked; a wrong name: refused; the apiserver's.
        for name, works in ((None, False), ("wrong.invalid", False), (upstream.hostname, True)):
            if name:
                cluster["tls-server-name"] = name
            path = tmp_path / f"kubeconfig-{name}"
            path.write_text(yaml.safe_dump(admin))
            api = KubeApi(load_connection(str(path)))
            try:
                if works:
                    assert api.list_pods(kube_ns.namespace, NOBODY)["kind"] == "PodList"
                else:
                    with pytest.raises(ssl.SSLCertVerificationError):
                        api.list_pods(kube_ns.namespace, NOBODY)
            finally:
                api.close()
    finally:
        proxy.close()
