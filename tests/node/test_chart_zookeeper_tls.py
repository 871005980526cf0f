"""TLS to the chart's own ZooKeeper ensemble on the real node, with the chart's defaults:
the servers serve clients on the secure port only, and the sidecars are connected through
it, checking the servers' chain and name.

What is tried, for real:
- every server's zoo.cfg (as the image's entrypoint wrote it) has `secureClientPort=2281`
  and no plain client port, and its kernel shows no listener on 2181, one on 2281;
- from a sidecar container (its Python and kazoo, the NetworkPolicy admitting it), on the
  client Service's name and port: a plaintext ZooKeeper handshake gets no answer and no
  session, a TLS client without a certificate gets none either, and a TLS client with the
  sidecars' certificate, checking the name of the connect string, gets a session;
- the sidecars: the servers' kernels show each app pod's established connection on 2281
  (there is no other client port), and one pod is labelled leader;
- the chart's generated CA and certificates: the server certificate names the client
  Service and each server, and both certificates chain to the CA; it carries the
  serverAuth and clientAuth extended key usages that quorum TLS needs;
- the quorum over TLS (sslQuorum, the servers' names checked both ways): zoo.cfg says so,
  the three servers form it (one leader, two followers) and the sidecars hold their
  sessions through it; from another server's container, a TLS client with the release's
  certificate completes the handshake on a peer's election port (3888), names checked both
  ways, and an election hello over it is taken (the connection kept), while the same
  hello in plaintext is not: the peer closes the connection without a byte and logs
  `Blocked insecure connection attempt`; the quorum is unchanged.

Read-only: it runs before the files that break the release (file order).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography import x509

from sidecar.lab.cluster.release import ChartRelease, wait
from sidecar.lab.node import chartzk

pytestmark = pytest.mark.timeout(300)
SLACK = 120.0
SECURE_PORT = 2281
PLAIN_PORT = 2181

# Run with `python -c` in a sidecar container: three clients against the client Service,
# one JSON line of outcomes.
CLIENTS = """\
import json, os, socket, struct, sys
from kazoo.client import KazooClient

host, port = os.environ["ZK_SERVICE"], int(os.environ["ZK_PORT"])
outcome = {}

# A ZooKeeper ConnectRequest in plain text (protocol version 0, zxid 0, timeout 6000 ms,
# session 0, a 16-byte empty password), as a plaintext client opens its session.
body = struct.pack(">iqiqi", 0, 0, 6000, 0, 16) + bytes(16)
with socket.create_connection((host, port), timeout=5) as plain:
    plain.sendall(struct.pack(">i", len(body)) + body)
    try:
        answer = plain.recv(64)
        outcome["plaintext"] = "closed" if not answer else f"answered {answer.hex()}"
    except TimeoutError:
        outcome["plaintext"] = "no answer"
    except ConnectionResetError:
        outcome["plaintext"] = "reset"

def session(**tls):
    client = KazooClient(hosts=f"{host}:{port}", timeout=6, connection_retry={"max_tries": 1},
                         **tls)
    try:
        client.start(timeout=8)
        return {"session": hex(client.client_id[0]),
                "children": sorted(client.get_children("/"))}
    except Exception as error:
        return {"error": type(error).__name__}
    finally:
        client.stop()
        client.close()

outcome["plaintext_kazoo"] = session()
ca = os.environ["ZK_TLS_CA"]
outcome["tls_without_certificate"] = session(use_ssl=True, verify_certs=True,
                                             check_hostname=True, ca=ca)
outcome["tls_as_the_sidecar"] = session(use_ssl=True, verify_certs=True, check_hostname=True,
                                        ca=ca, certfile=os.environ["ZK_TLS_CERT"],
                                        keyfile=os.environ["ZK_TLS_KEY"])
print(json.dumps(outcome))
"""


def listeners_and_peers(release: ChartRelease, pod: str) -> tuple[set[int], set[str]]:
    """Ports in LISTEN and the remote IPv4 addresses of ESTABLISHED connections to the
    secure port, from the kernel's tables inside a server's container."""
    out = chartzk.exec_in(release, pod, "zookeeper", "cat", "/proc/net/tcp",
                          "/proc/net/tcp6").stdout
    listening: set[int] = set()
    peers: set[str] = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1]:
            continue
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        state = fields[3]
        if state == "0A":
            listening.add(local_port)
        elif state == "01" and local_port == SECURE_PORT:
            remote = fields[2].rsplit(":", 1)[0]
            raw = bytes.fromhex(remote[-8:])  # IPv4, or IPv4-mapped IPv6: its last 4 bytes
            peers.add(".".join(str(b) for b in reversed(raw)))
    return listening, peers


def certificate(data: dict[str, str], key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(data[key]))


def test_every_server_serves_clients_over_tls_only(node_release: ChartRelease) -> None:
    wait(lambda: chartzk.modes(node_release) == chartzk.QUORUM, SLACK,
         "srvr over TLS: one leader and two followers")
    for pod in chartzk.pods(node_release):
        config = chartzk.exec_in(node_release, pod, "zookeeper", "cat", "/conf/zoo.cfg").stdout
        settings = dict(line.split("=", 1) for line in config.splitlines() if "=" in line)
        assert settings["secureClientPort"] == str(SECURE_PORT), config
        assert settings["ssl.clientAuth"] == "need", config
        assert "clientPort" not in settings, config
        servers = [v for k, v in settings.items() if k.startswith("server.")]
        assert len(servers) == 3 and not any(";" in v for v in servers), servers
        listening, _ = listeners_and_peers(node_release, pod)
        assert SECURE_PORT in listening and PLAIN_PORT not in listening, (pod, listening)
        # The quorum (2888, 3888) over TLS too, with the same key store and CA, and the
        # peers' names checked.
        assert settings["sslQuorum"] == "true", config
        assert settings["ssl.quorum.keyStore.location"] == "/run/zookeeper-tls/keystore.pem"
        assert settings["ssl.quorum.trustStore.location"] == "/etc/zookeeper/tls/ca.crt"
        assert settings["ssl.quorum.keyStore.type"] == "PEM", config
        assert settings["ssl.quorum.trustStore.type"] == "PEM", config
        assert settings["ssl.quorum.hostnameVerification"] == "true", config
        assert "portUnification" not in settings, config
        # The key store was made in memory from the Secret, the key converted to PKCS#8.
        first = chartzk.exec_in(node_release, pod, "zookeeper", "head", "-n", "1",
                                "/run/zookeeper-tls/keystore.pem").stdout.strip()
        assert first == "-----BEGIN PRIVATE KEY-----", first


def test_on_the_client_service_only_tls_with_the_client_certificate_gets_a_session(
        node_release: ChartRelease) -> None:
    node_release.wait_settled(SLACK)
    pod = sorted(p["metadata"]["name"] for p in node_release.pods())[0]
    env = {e["name"]: e.get("value") for e in next(
        c for c in node_release.get_json("pod", pod)["spec"]["initContainers"]
        if c["name"] == "leader-sidecar")["env"]}
    service, port = env["ZK_HOSTS"].rsplit(":", 1)
    assert service == f"{node_release.name}-zookeeper.{node_release.namespace}.svc.cluster.local"
    assert int(port) == SECURE_PORT
    started = time.monotonic()
    out = chartzk.exec_in(
        node_release, pod, "leader-sidecar", "env", f"ZK_SERVICE={service}",
        f"ZK_PORT={port}", "python", "-c", CLIENTS).stdout
    outcome: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    print(f"clients took {time.monotonic() - started:.1f} s: {json.dumps(outcome)}")
    assert outcome["plaintext"] in ("closed", "reset", "no answer"), outcome
    assert "error" in outcome["plaintext_kazoo"], outcome
    assert "error" in outcome["tls_without_certificate"], outcome
    assert "leader-election" in outcome["tls_as_the_sidecar"].get("children", []), outcome


def test_the_sidecars_are_connected_over_tls_and_one_pod_leads(
        node_release: ChartRelease) -> None:
    leader = node_release.wait_settled(SLACK)
    assert node_release.labelled_leaders() == [leader]
    pods = node_release.pods()
    for pod in pods:
        sidecar = next(c for c in pod["spec"]["initContainers"]
                       if c["name"] == "leader-sidecar")
        env = {e["name"]: e.get("value") for e in sidecar["env"]}
        assert env["ZK_TLS_CA"] and env["ZK_TLS_CERT"] and env["ZK_TLS_KEY"], env
    app_ips = {node_release.pod_ip(p["metadata"]["name"]) for p in pods}

    def connected() -> set[str]:
        peers: set[str] = set()
        for server in chartzk.pods(node_release):
            peers |= listeners_and_peers(node_release, server)[1]
        return peers

    # Every sidecar holds a session, and the servers have no client port but 2281.
    wait(lambda: app_ips <= connected(), SLACK, "each app pod connected on 2281")


def test_the_generated_certificates_name_the_ensemble_and_chain_to_the_ca(
        node_release: ChartRelease) -> None:
    name, ns = node_release.name, node_release.namespace
    server = node_release.get_json("secret", f"{name}-zookeeper-tls")
    client = node_release.get_json("secret", f"{name}-zookeeper-client-tls")
    for secret in (server, client):
        assert secret["type"] == "kubernetes.io/tls"
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert server["data"]["ca.crt"] == client["data"]["ca.crt"]
    ca = certificate(server["data"], "ca.crt")
    names = certificate(server["data"], "tls.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{name}-zookeeper.{ns}.svc.cluster.local" in names
    for i in range(3):
        assert (f"{name}-zookeeper-{i}.{name}-zookeeper-headless.{ns}.svc.cluster.local"
                in names)
    for key in ("tls.crt",):
        for secret in (server, client):
            certificate(secret["data"], key).verify_directly_issued_by(ca)
    # Quorum TLS: every server is TLS client and server to its peers with this certificate.
    usages = certificate(server["data"], "tls.crt").extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert x509.ExtendedKeyUsageOID.SERVER_AUTH in usages
    assert x509.ExtendedKeyUsageOID.CLIENT_AUTH in usages


# Run with `bash -c` in a server's container (bash and openssl, no Python there): the same
# election hello, sent to a peer's election port (3888) over TLS with the release's
# certificate and in plaintext. The hello is what a server opens a connection to its peer
# with: protocol version -65535, its sid (99 here: above every real one, so the peer keeps
# the connection rather than close it and call back), the length and bytes of its election
# address. A peer that takes it keeps the connection open and sends nothing (it sends
# notifications only to the servers of its view); one that refuses it closes it.
PEER_PROBE = r"""
set -u
peer=$1
hello() {
    printf '\xff\xff\xff\xff\xff\xff\x00\x01\x00\x00\x00\x00\x00\x00\x00\x63'
    printf '\x00\x00\x00\x0a%s' probe:3888
}
echo "--- tls handshake"
timeout 8 openssl s_client -connect "$peer:3888" -brief -verify_return_error \
    -CAfile /etc/zookeeper/tls/ca.crt -cert /etc/zookeeper/tls/tls.crt \
    -key /etc/zookeeper/tls/tls.key </dev/null 2>&1 | grep -E '^(CONNECTION|Verification|Peer certificate)'
echo "--- tls hello"
{ hello; sleep 7; } | timeout 5 openssl s_client -connect "$peer:3888" -quiet \
    -verify_return_error -CAfile /etc/zookeeper/tls/ca.crt \
    -cert /etc/zookeeper/tls/tls.crt -key /etc/zookeeper/tls/tls.key > /tmp/answer 2>/dev/null
status=$?
if [ "$status" = 124 ]; then echo "still open"; else echo "closed ($status)"; fi
echo "--- plaintext hello"
exec 3<>"/dev/tcp/$peer/3888" || { echo "connect failed"; exit 0; }
# The peer may close before the hello is written: a broken pipe, not a reason to die.
trap '' PIPE
if ! hello >&3 2>/dev/null; then
    echo "closed after 0 bytes"
elif timeout 5 head -c 64 <&3 > /tmp/answer 2>/dev/null; then
    echo "closed after $(wc -c < /tmp/answer) bytes"
elif [ "$?" != 124 ]; then
    echo "closed after 0 bytes"  # reset by the peer
else
    echo "still open"
fi
"""


def logs_since(release: ChartRelease, pod: str, since: str) -> str:
    return release.kubectl("logs", pod, "-c", "zookeeper", f"--since-time={since}")


def test_the_quorum_speaks_tls_only_between_the_servers(node_release: ChartRelease) -> None:
    wait(lambda: chartzk.modes(node_release) == chartzk.QUORUM, SLACK,
         "srvr over TLS: one leader and two followers")
    node_release.wait_settled(SLACK)
    servers = chartzk.pods(node_release)
    prober, target = servers[0], servers[1]
    name, ns = node_release.name, node_release.namespace
    peer = f"{target}.{name}-zookeeper-headless.{ns}.svc.cluster.local"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    out = chartzk.exec_in(node_release, prober, "zookeeper", "bash", "-c", PEER_PROBE,
                          "probe", peer).stdout
    log = wait(lambda: (lambda text: text if "Blocked insecure" in text else None)(
        logs_since(node_release, target, since)), 20, "the peer logs the plaintext hello")
    print(out)
    _, handshake, over_tls, plaintext = out.split("--- ")
    # The election port speaks TLS, and the two servers take each other's certificate:
    # chain and names (the target checks the prober's by a reverse lookup of its address).
    assert "CONNECTION ESTABLISHED" in handshake and "Verification: OK" in handshake, out
    # Over TLS the peer takes the hello and keeps the connection; in plaintext the same
    # hello is refused: the connection closed, nothing sent back.
    assert over_tls.split("\n", 1)[1].strip() == "still open", out
    assert plaintext.split("\n", 1)[1].strip() == "closed after 0 bytes", out
    # The peer's log says so: the prober's TLS connections accepted, its plaintext one
    # blocked as insecure.
    prober_ip = node_release.pod_ip(prober)
    assert f"Accepted TLS connection from /{prober_ip}:" in log, log
    assert "Blocked insecure connection attempt" in log, log
    # Nothing changed: still three servers in a quorum, one pod leading.
    assert chartzk.modes(node_release) == chartzk.QUORUM
    assert len(node_release.labelled_leaders()) == 1
