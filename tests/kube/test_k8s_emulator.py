"""The test support's extensions of kmock's emulator, checked with the real kubernetes client
(the same client the sidecar uses), so that the other tests can trust them."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request

import kubernetes
import pytest
import urllib3
from kmock_support import LabelSelector, SelectorError, wait_until
from kubernetes.client.exceptions import ApiException

MERGE = "application/merge-patch+json"


def raw_patch(kube_api, name: str, body: object, content_type: str) -> int:
    request = urllib.request.Request(
        f"{kube_api.url}/api/v1/namespaces/default/pods/{name}",
        method="PATCH",
        data=json.dumps(body).encode(),
        headers={"Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def v1(kube_api):
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(kube_api.kubeconfig_path), client_configuration=configuration
    )
    configuration.retries = 0
    client = kubernetes.client.ApiClient(configuration)
    yield kubernetes.client.CoreV1Api(client)
    client.close()


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ("", {}, True),
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a!=1", {"a": "1"}, False),
        ("a in (1, 2),b", {"a": "2", "b": ""}, True),
        ("a notin (1,2)", {"a": "3"}, True),
        ("a notin (1,2)", {"a": "1"}, False),
        ("!a", {"b": "1"}, True),
        (
            "leader-election/name=demo,role=leader",
            {"leader-election/name": "demo", "role": "leader"},
            True,
        ),
        ("leader-election/name=demo,role=leader", {"leader-election/name": "demo"}, False),
    ],
)
def test_label_selector_syntax(selector, labels, expected):
    assert LabelSelector.parse(selector).matches(labels) is expected


def test_label_selector_rejects_garbage():
    with pytest.raises(SelectorError):
        LabelSelector.parse("a=(")


def test_list_honours_label_selector(kube_api, v1):
    kube_api.add_pod("a", {"group": "x", "role": "leader"})
    kube_api.add_pod("b", {"group": "x", "role": "follower"})
    kube_api.add_pod("c", {"group": "y"})
    names = [
        p.metadata.name for p in v1.list_namespaced_pod("default", label_selector="group=x").items
    ]
    assert sorted(names) == ["a", "b"]
    leaders = v1.list_namespaced_pod("default", label_selector="group=x,role=leader").items
    assert [p.metadata.name for p in leaders] == ["a"]
    with pytest.raises(ApiException) as error:
        v1.list_namespaced_pod("default", label_selector="a=(")
    assert error.value.status == 400


def test_watch_honours_label_selector_with_real_api_semantics(kube_api, v1):
    kube_api.add_pod("a", {"group": "x"})
    kube_api.add_pod("c", {"group": "y"})
    seen: list[tuple[str, str]] = []
    watch = kubernetes.watch.Watch()

    def consume():
        with contextlib.suppress(Exception):  # the stream breaks when the server closes
            for event in watch.stream(
                v1.list_namespaced_pod, "default", label_selector="group=x", _request_timeout=10
            ):
                seen.append((event["type"], event["object"].metadata.name))

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    wait_until(lambda: ("ADDED", "a") in seen)
    kube_api.label_pod("c", "group", "x")  # starts matching: ADDED
    kube_api.label_pod("a", "role", "leader")  # still matching: MODIFIED
    kube_api.label_pod("a", "group", None)  # stops matching: DELETED
    kube_api.label_pod("a", "role", "follower")  # not matching: nothing
    kube_api.delete_pod("c")
    wait_until(lambda: ("DELETED", "c") in seen)
    watch.stop()
    assert seen == [
        ("ADDED", "a"),
        ("ADDED", "c"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
        ("DELETED", "c"),
    ]


def test_merge_patch_null_removes_keys(kube_api, v1):
    kube_api.add_pod("a", {"keep": "1", "drop": "2"}, {"note": "x"})
    pod = v1.patch_namespaced_pod(
        "a",
        "default",
        {"metadata": {"labels": {"drop": None, "new": "3"}, "annotations": {"note": None}}},
        _content_type=MERGE,
    )
    assert pod.metadata.labels == {"keep": "1", "new": "3"}
    assert not pod.metadata.annotations
    assert kube_api.labels("a") == {"keep": "1", "new": "3"}


def test_patch_content_types(kube_api, v1):
    kube_api.add_pod("a", {"x": "1"})
    # The client's default for a dict body: strategic merge patch; same as merge for maps.
    v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": None, "y": "2"}}})
    assert kube_api.labels("a") == {"y": "2"}
    v1.patch_namespaced_pod(
        "a",
        "default",
        [{"op": "add", "path": "/metadata/labels/z", "value": "3"}],
        _content_type="application/json-patch+json",
    )
    assert kube_api.labels("a") == {"y": "2", "z": "3"}
    for body, content_type, code in [
        ({"metadata": {}}, "application/json-patch+json", 400),
        ([{"op": "remove", "path": "/x"}], MERGE, 400),
        (
            {"metadata": {"labels": {"$patch": "delete"}}},
            "application/strategic-merge-patch+json",
            422,
        ),
        ({"metadata": {}}, "application/apply-patch+yaml", 415),
    ]:
        # Raw HTTP: the client itself picks the content type from the body's shape.
        assert raw_patch(kube_api, "a", body, content_type) == code, (content_type, body)
    assert kube_api.labels("a") == {"y": "2", "z": "3"}


def test_created_objects_get_names_uids_and_versions(kube_api, v1):
    body = {"metadata": {"generateName": "ev-"}, "involvedObject": {"name": "a"}, "reason": "R"}
    first = v1.create_namespaced_event("default", body)
    second = v1.create_namespaced_event("default", body)
    assert first.metadata.name != second.metadata.name
    assert first.metadata.name.startswith("ev-") and first.metadata.uid
    assert len(kube_api.events(reason="R")) == 2

    kube_api.add_pod("a")
    version = kube_api.pod("a")["metadata"]["resourceVersion"]
    v1.patch_namespaced_pod(
        "a", "default", {"metadata": {"labels": {"k": "v"}}}, _content_type=MERGE
    )
    newer = kube_api.pod("a")["metadata"]["resourceVersion"]
    assert int(newer) > int(version)
    with pytest.raises(ApiException) as error:  # optimistic concurrency, as on the real API
        v1.patch_namespaced_pod(
            "a",
            "default",
            {"metadata": {"resourceVersion": version, "labels": {"k": "w"}}},
            _content_type=MERGE,
        )
    assert error.value.status == 409
    assert kube_api.labels("a") == {"k": "v"}


def test_faults_happen_before_the_state_changes(kube_api, v1):
    kube_api.add_pod("a")
    kube_api.forbid("patch", "pods")
    with pytest.raises(ApiException) as error:
        v1.patch_namespaced_pod(
            "a", "default", {"metadata": {"labels": {"k": "v"}}}, _content_type=MERGE
        )
    assert error.value.status == 403
    assert 'cannot patch resource "pods"' in json.loads(error.value.body)["message"]
    assert "k" not in kube_api.labels("a")  # kmock's own reactions would have patched it
    assert v1.read_namespaced_pod("a", "default").metadata.name == "a"  # other verbs work

    kube_api.heal()
    kube_api.fail(503, ["get"], "pods", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as error:
            v1.read_namespaced_pod("a", "default")
        assert error.value.status == 503
    assert v1.read_namespaced_pod("a", "default").metadata.name == "a"

    kube_api.slow(0.5, ["get"], "pods")
    started = time.monotonic()
    v1.read_namespaced_pod("a", "default")
    assert time.monotonic() - started >= 0.5


def test_down_refuses_connections_and_up_comes_back_on_the_same_port(kube_api, v1):
    kube_api.add_pod("a")
    port = kube_api.port
    kube_api.down()
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        v1.read_namespaced_pod("a", "default", _request_timeout=2)
    kube_api.label_pod("a", "k", "v")  # the test (kubectl) side still works
    kube_api.up()
    assert kube_api.port == port
    assert v1.read_namespaced_pod("a", "default").metadata.labels == {"k": "v"}
