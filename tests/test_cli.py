"""The command line: bad input exits 2 with one line; `status`; `leave`; HTTP endpoints."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from election_support import SLACK, Group

from sidecar.cli import main
from sidecar.lab.candidates import wait_for
from sidecar.lab.ensemble import Ensemble, free_port

GOOD = ["--zk-hosts", "127.0.0.1:2181", "--election", "demo", "--no-k8s", "--http-port", "0"]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["run", "--election", "demo"], {}, "missing ZooKeeper hosts"),
        (["run", "--zk-hosts", "host:99999", "--election", "demo"], {}, "bad port"),
        (["run", "--zk-hosts", "a b:1", "--election", "demo"], {}, "malformed"),
        (["run", "--zk-hosts", "h:2181/bad//chroot", "--election", "demo"], {}, "chroot"),
        (["run", "--zk-hosts", "h:2181"], {}, "missing election name"),
        (["run", "--zk-hosts", "h:2181", "--election", "Bad_Name"], {}, "bad election name"),
        (["run", *GOOD, "--session-timeout", "0.1"], {}, "out of range"),
        (["run", *GOOD, "--session-timeout", "soon"], {}, "not a number"),
        (["run", *GOOD, "--role-label", "bad label"], {}, "bad role label"),
        (["run", *GOOD, "--zk-auth", "nopassword"], {}, "user:password"),
        (["run", "--zk-hosts", "h:2181", "--election", "d"], {"HTTP_PORT": "70000"}, "out of range"),
        (["run", "--bogus"], {}, "unrecognized arguments"),
        ([], {}, "required"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(
    argv: list[str], env: dict[str, str], message: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    environment = {"ROLE_DIR": str(tmp_path), **env}
    assert main(argv, environment) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("leader-sidecar: error:")
    assert message in err


def test_role_dir_that_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", *GOOD, "--role-dir", str(blocker / "sub")], {}) == 2
    assert "role directory" in capsys.readouterr().err


def test_port_in_use_exits_2_before_volunteering(
    ensemble: Ensemble, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        argv = ["run", "--zk-hosts", ensemble.connect_string, "--election", "port-clash",
                "--no-k8s", "--http-host", "127.0.0.1", "--http-port", str(port),
                "--role-dir", str(tmp_path)]
        assert main(argv, {}) == 2
    err = capsys.readouterr().err
    assert f"cannot serve HTTP on port {port}" in err
    assert "volunteered" not in caplog.text, "the port is checked before it is a candidate"
    assert json.loads((tmp_path / "status.json").read_text())["role"] == "unknown"


def test_bad_configuration_from_the_console_script_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--election", "demo"],
        capture_output=True, text=True, env={**os.environ, "ROLE_DIR": str(tmp_path)},
        timeout=30, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_flag_wins_over_environment(tmp_path: Path) -> None:
    from sidecar.cli import build_config, build_parser

    args = build_parser().parse_args(["run", "--election", "from-flag", "--role-dir", str(tmp_path)])
    config = build_config(
        args, {"ELECTION_NAME": "from-env", "ZK_HOSTS": "zk:2181", "POD_NAME": "pod-7",
               "ZK_SESSION_TIMEOUT": "3", "K8S_DISABLED": "1"},
    )
    assert config.election == "from-flag"
    assert config.zk_hosts == "zk:2181"
    assert config.identity == "pod-7"
    assert config.session_timeout == 3.0
    assert not config.publishes_to_kubernetes


def test_unreachable_zookeeper_is_not_an_error(tmp_path: Path, group: Group) -> None:
    port = free_port()
    (member,) = group.spawn(f"127.0.0.1:{free_port()}", http_port=port)
    assert wait_for(lambda: member.role() == "unknown", SLACK)
    assert wait_for(lambda: _get(port, "/healthz")[0] == 200, SLACK)
    assert _get(port, "/readyz")[0] == 503, "not ready without ZooKeeper"
    assert member.running, "it keeps trying"
    assert member.terminate() == 0


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: it only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def _get(
    port: int, path: str, method: str = "GET", host: str = "127.0.0.1"
) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{host}:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def test_status_lists_the_queue_leader_first(
    ensemble: Ensemble, group: Group, capsys: pytest.CaptureFixture[str]
) -> None:
    group.spawn(ensemble.connect_string, count=3)
    leader = group.wait_one_leader()
    argv = ["status", "--zk-hosts", ensemble.connect_string, "--election", group.election]
    assert main([*argv, "--json"], {}) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["leader"] == leader.identity
    queue = document["candidates"]
    assert [c["position"] for c in queue] == [0, 1, 2]
    assert queue[0]["identity"] == leader.identity
    assert queue[0]["epoch"] == leader.status()["epoch"]  # type: ignore[index]
    assert sorted(c["sequence"] for c in queue) == [c["sequence"] for c in queue]
    assert main(argv, {}) == 0
    table = capsys.readouterr().out
    assert f"leader {leader.identity}" in table


def test_status_exits_3_without_candidates(
    ensemble: Ensemble, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["status", "--zk-hosts", ensemble.connect_string, "--election", "nobody-here"]
    assert main(argv, {}) == 3
    assert "no candidates" in capsys.readouterr().out


def test_http_endpoints_and_leave(ensemble: Ensemble, group: Group) -> None:
    port = free_port()
    (member,) = group.spawn(ensemble.connect_string, http_port=port)
    group.wait_one_leader()
    assert wait_for(lambda: _get(port, "/readyz")[0] == 200, SLACK)
    assert _get(port, "/healthz")[0] == 200
    code, body = _get(port, "/role")
    assert code == 200 and json.loads(body)["role"] == "leader"
    master = f'leader_election_master_status{{name="{group.election}"}} 1.0'
    assert wait_for(lambda: master in _get(port, "/metrics")[1].decode(), SLACK)
    text = _get(port, "/metrics")[1].decode()
    assert "leader_sidecar_zk_negotiated_session_timeout_seconds 2.0" in text
    if socket.has_dualstack_ipv6():  # the default host is every address, IPv6 too
        assert _get(port, "/healthz", host="[::1]")[0] == 200
    assert "leader_sidecar_epoch" in text
    assert "leader_sidecar_publish_seconds_bucket" in text
    (other,) = group.spawn(ensemble.connect_string)
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "leave", "--role-dir", str(member.role_dir)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: other.role() == "leader", SLACK), "the next one took over at once"
    assert member.role() == "unknown" and member.running, "left, but still running"
    assert _get(port, "/readyz")[0] == 503
    for _ in range(20):  # clients that hang up before the reply is written
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert _get(port, "/healthz")[0] == 200
    assert member.terminate() == 0
    log = member.log_text()
    assert "Traceback" not in log, log[-3000:]


def test_nobody_on_the_network_can_make_the_leader_leave(ensemble: Ensemble, group: Group) -> None:
    """The TCP port refuses the routes that change the election (403, whatever the method
    and the address); the control socket takes POST only (405)."""
    port = free_port()
    (member,) = group.spawn(ensemble.connect_string, http_port=port)
    assert group.wait_one_leader() is member
    group.spawn(ensemble.connect_string)
    assert wait_for(lambda: _get(port, "/healthz")[0] == 200, SLACK)
    for path in ("/leave", "/rejoin", "/leave?now=1"):
        for method in ("GET", "POST"):
            code, body = _get(port, path, method)
            assert code == 403, (path, method, code)
            assert b"leader-sidecar leave" in body
    assert _get(port, "/leave", "PUT")[0] == 501, "no other method either"
    outside = _non_loopback_address()
    if outside is not None:  # from another address of this machine, as another pod would
        assert _get(port, "/leave", "POST", host=outside)[0] == 403
    assert _control(member.role_dir, "GET", "/leave") == 405
    assert _control(member.role_dir, "HEAD", "/rejoin") == 501
    assert member.role() == "leader", "none of that changed anything"
    assert group.wait_one_leader() is member
    mode = (member.role_dir / "control.sock").stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)


def test_second_sidecar_on_the_same_role_directory_exits_2(
    ensemble: Ensemble, group: Group, capsys: pytest.CaptureFixture[str]
) -> None:
    (member,) = group.spawn(ensemble.connect_string)
    assert wait_for(lambda: (member.role_dir / "control.sock").exists(), SLACK)
    argv = ["run", "--zk-hosts", ensemble.connect_string, "--election", group.election,
            "--no-k8s", "--http-port", "0", "--role-dir", str(member.role_dir)]
    assert main(argv, {}) == 2
    assert "another sidecar is running" in capsys.readouterr().err
    assert (member.role_dir / "control.sock").exists(), "the running one keeps its socket"
    assert member.terminate() == 0
    assert not (member.role_dir / "control.sock").exists(), "removed on a graceful stop"


def test_leave_without_a_sidecar_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "leave", "--role-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 1
    assert "cannot reach the sidecar" in result.stderr
    assert "Traceback" not in result.stderr


def _control(role_dir: Path, method: str, path: str) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(role_dir / "control.sock"))
        client.sendall(f"{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return int(client.recv(1024).split()[1])


def test_leader_elector_drop_in(ensemble: Ensemble, group: Group) -> None:
    port = free_port()
    group.spawn(ensemble.connect_string, extra_args=("--elector-port", str(port)))
    leader = group.wait_one_leader()
    assert wait_for(lambda: _get(port, "/")[0] == 200, SLACK)
    assert json.loads(_get(port, "/")[1]) == {"name": leader.identity}


def test_control_socket_in_a_role_directory_deeper_than_a_socket_address(tmp_path: Path) -> None:
    from sidecar import control
    from sidecar.httpapi import HttpServer, control_routes

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    left = []

    class Sidecar:
        def leave(self) -> None:
            left.append(True)

        def rejoin(self) -> None:
            pass

    server = HttpServer(control.bind(deep), *control_routes(Sidecar())).start()  # type: ignore[arg-type]
    try:
        assert len(str(deep / "control.sock")) > control.MAX_SOCKET_PATH
        assert control.request(deep, "/leave") == 202
        assert left == [True]
    finally:
        server.stop()
