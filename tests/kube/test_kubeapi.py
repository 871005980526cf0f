"""`sidecar/kubeapi.py` against the real kube-apiserver: every way a kubeconfig can carry
credentials that a sidecar may meet, and one clear error for a kubeconfig that is not one."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from sidecar.kubeapi import ApiError, KubeApi, KubernetesConfigError, load_connection


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
