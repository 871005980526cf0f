"""Issue 11, hostile input: every flag and environment variable, fuzzed.

Each value either gives a valid configuration (checked against its invariants and, for
the ZooKeeper hosts, against kazoo's own parser) or makes `main` return 2 with exactly one
printable line on stderr, naming the flag or variable, and no traceback. Any other
exception escaping `configure` fails the test with its traceback: that is the bug.

Nothing here starts a sidecar: accepted input only goes through `sidecar.cli.configure`
(parse and check; `run` creates its role directory, always under a temporary directory
here), rejected input goes through `main`, which fails in `configure` before starting.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kazoo.hosts import collect_hosts

from sidecar.cli import UsageError, build_parser, configure, main
from sidecar.config import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    ELECTION_NAME_PATTERN,
    LABEL_KEY_PATTERN,
    LOG_LEVELS,
    MAX_SESSION_TIMEOUT,
    MIN_SESSION_TIMEOUT,
    Config,
    ConfigError,
)

PREFIX = "leader-sidecar: error: "


SCALE = float(os.environ.get("FUZZ_SCALE", "1"))  # e.g. FUZZ_SCALE=20 for a long hunt


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- hostile values ---------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # NUL, controls, lone surrogates included
SPECIAL = [
    "", " ", "\t", "\n", "\x00", "\ud800", "\udcff", "-", "--", "=", ":", "/", ".", "..",
    "nan", "NaN", "inf", "-inf", "+inf", "1e999", "-1e999", "1e-999", "-0", "-0.0", "0",
    "-1", "1.5", "0.5", "6.0", "1e3", "0x10", "0o7", "0b1", "1_0", "\u0661\u0662", "\uff11\uff12", "²", "½",
    "+5", " 5 ", "\t5\n", "5\n", "5\x00", "9" * 30, "9" * 5000, "true", "yes", "None",
    "null", "é", "😀", "a\nb", "$(id)", "'; rm -rf /", "%s%n", "\x1b[31m", "\u202e",
    "\ufeff", "x" * 300, "/" * 300, "0.0.0.0", "::", "[::1]", "localhost",
]
TEXT = st.text(ANY_CHAR, max_size=40)
HUGE = st.builds(
    lambda piece, times: piece * times,
    st.text(ANY_CHAR, min_size=1, max_size=3), st.integers(500, 40_000),
)
NUMBERS = st.one_of(
    st.integers().map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats().map(lambda x: f"{x:.3e}"),
)
VALUES = st.one_of(st.sampled_from(SPECIAL), TEXT, NUMBERS, HUGE)


# -- running one input ------------------------------------------------------------------

class Rejected:
    def __init__(self, line: str) -> None:
        self.line = line


def outcome(argv: Sequence[str], env: Mapping[str, str]) -> Config | Rejected | None:
    """The `Config` of an accepted `run`, None for another accepted command, `Rejected`
    (after checking that `main` reports it in one line with status 2)."""
    try:
        return configure(list(argv), env).config  # type: ignore[no-any-return]
    except (ConfigError, UsageError):
        pass
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(argv), env)
    text = err.getvalue()
    assert code == 2, (argv, code, text)
    assert "Traceback" not in text
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    line = text[:-1]
    assert line.startswith(PREFIX) and len(line) > len(PREFIX), repr(line)
    assert line.isprintable(), repr(line)  # no NUL, escape codes or lone surrogates
    line.encode("utf-8")
    assert len(line) < 600, len(line)
    assert out.getvalue() == ""
    return Rejected(line)


def rejected_naming(result: Config | Rejected | None, *names: str) -> bool:
    """Whether `result` is a rejection; if so, its line names one of `names`."""
    if not isinstance(result, Rejected):
        return False
    assert any(name in result.line for name in names), (names, result.line)
    return True


def assert_valid(config: Config | Rejected | None) -> Config:
    assert isinstance(config, Config), config
    hosts, chroot = collect_hosts(config.zk_hosts)  # what the sidecar's kazoo will do
    assert hosts and all(host and 0 < port < 65536 for host, port in hosts)
    assert chroot is None or chroot.startswith("/")
    assert re.fullmatch(ELECTION_NAME_PATTERN, config.election) and len(config.election) <= 63
    assert math.isfinite(config.session_timeout)
    assert MIN_SESSION_TIMEOUT <= config.session_timeout <= MAX_SESSION_TIMEOUT
    for port in (config.http_port, config.elector_port):
        assert isinstance(port, int) and 0 <= port <= 65535
    assert not config.elector_port or config.elector_port != config.http_port
    assert config.role_dir.is_dir() and os.access(config.role_dir, os.W_OK)
    assert re.fullmatch(LABEL_KEY_PATTERN, config.role_label)
    assert config.identity and config.identity.isprintable() and len(config.identity) <= 253
    assert not any(char.isspace() or char == "/" for char in config.identity)
    if config.publishes_to_kubernetes:
        assert re.fullmatch(DNS_SUBDOMAIN_PATTERN, config.identity)
    assert config.namespace is None or re.fullmatch(DNS_LABEL_PATTERN, config.namespace)
    assert config.election_path.startswith("/") and "//" not in config.election_path
    assert not {".", ".."} & set(config.election_path.split("/"))
    assert config.log_level in LOG_LEVELS
    assert isinstance(logging.getLevelName(config.log_level), int)
    assert config.http_host
    if config.zk_auth is not None:
        user, _, password = config.zk_auth.partition(":")
        assert user and password and config.zk_auth.isprintable()
    for value in (config.zk_hosts, config.election, config.identity, config.role_label,
                  config.http_host, config.zk_auth or "", config.namespace or ""):
        value.encode("utf-8")  # no lone surrogates towards ZooKeeper or the API
    return config


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Role directories of this module; module-scoped, so hypothesis may share it."""
    return tmp_path_factory.mktemp("fuzz-config")


def confined(base: Path, text: str) -> str:
    """A hostile path text kept under `base` (no absolute path, no '..')."""
    parts = [part for part in text.split("/") if part not in ("", ".", "..")]
    return str(base / "r" / "/".join(parts)) if parts else str(base / "r")


def good_run(base: Path, *extra: str) -> list[str]:
    return ["run", "--zk-hosts", "127.0.0.1:2181", "--election", "demo", "--no-k8s",
            "--http-port", "0", "--role-dir", str(base / "ok"), *extra]


def env_for(base: Path, **values: str) -> dict[str, str]:
    return {"ROLE_DIR": str(base / "ok"), "POD_NAME": "pod-0", **values}


def minimal_env(base: Path, **values: str) -> dict[str, str]:
    return {**env_for(base), "ZK_HOSTS": "zk:2181", "ELECTION_NAME": "demo",
            "K8S_DISABLED": "1", "HTTP_PORT": "0", **values}


def as_flag(flag: str, value: str) -> str:
    return f"{flag}={value}"  # the `=` form: a value starting with '-' stays a value


# -- durations and timeouts ---------------------------------------------------------------

@fuzz(250)
@given(value=VALUES, via_env=st.booleans())
def test_session_timeout(base: Path, value: str, via_env: bool) -> None:
    if via_env:
        result = outcome(["run"], minimal_env(base, ZK_SESSION_TIMEOUT=value))
        name = "ZK_SESSION_TIMEOUT"
    else:
        result = outcome(good_run(base, as_flag("--session-timeout", value)), env_for(base))
        name = "--session-timeout"
    if via_env and value == "":
        assert assert_valid(result).session_timeout == 6.0  # empty variable: the default
    elif not rejected_naming(result, name):
        config = assert_valid(result)
        assert config.session_timeout == float(value)


@fuzz(150)
@given(seconds=st.floats(MIN_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT), style=st.sampled_from(
    ["{}", "{!r}", " {} ", "{:.2f}", "{:e}"]))
def test_good_session_timeouts_are_accepted(base: Path, seconds: float, style: str) -> None:
    text = style.format(seconds)
    if not MIN_SESSION_TIMEOUT <= float(text) <= MAX_SESSION_TIMEOUT:
        return  # rounding by the format went out of range
    config = assert_valid(outcome(good_run(base, as_flag("--session-timeout", text)), {}))
    assert config.session_timeout == float(text)


# -- ports ------------------------------------------------------------------------------

PORTS = [("--http-port", "HTTP_PORT"), ("--elector-port", "ELECTOR_PORT")]


@fuzz(250)
@given(value=VALUES, which=st.sampled_from(PORTS), via_env=st.booleans())
def test_ports(base: Path, value: str, which: tuple[str, str], via_env: bool) -> None:
    flag, var = which
    if via_env:
        env = env_for(base, ZK_HOSTS="zk:2181", ELECTION_NAME="demo", K8S_DISABLED="1")
        env[var] = value
        if var == "ELECTOR_PORT":
            env["HTTP_PORT"] = "0"
        result = outcome(["run"], env)
        name = var
    else:
        result = outcome(good_run(base, as_flag(flag, value)), env_for(base))
        name = flag
    if rejected_naming(result, name):
        return
    config = assert_valid(result)
    if via_env and value == "":
        return  # empty variable: the default
    port = config.http_port if flag == "--http-port" else config.elector_port
    assert port == int(value)


@fuzz(150)
@given(http=st.integers(0, 65535), elector=st.integers(0, 65535), pad=st.sampled_from(
    ["", " ", "+", "0"]))
def test_good_ports_are_accepted(base: Path, http: int, elector: int, pad: str) -> None:
    argv = [*good_run(base)[:-4], "--http-port", f"{pad}{http}", "--elector-port", f"{elector}",
            "--role-dir", str(base / "ok")]
    result = outcome(argv, {})
    if elector and elector == http:
        assert rejected_naming(result, "--elector-port")
        return
    config = assert_valid(result)
    assert (config.http_port, config.elector_port) == (http, elector)


# -- identities and names ---------------------------------------------------------------

NAMES = [
    ("--election", "ELECTION_NAME"), ("--identity", "POD_NAME"),
    ("--namespace", "POD_NAMESPACE"), ("--role-label", "ROLE_LABEL"),
]
DNS_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


@fuzz(300)
@given(value=VALUES, which=st.sampled_from(NAMES), via_env=st.booleans(), k8s=st.booleans())
def test_names(base: Path, value: str, which: tuple[str, str], via_env: bool, k8s: bool) -> None:
    flag, var = which
    env = {"ROLE_DIR": str(base / "ok"), "ZK_HOSTS": "zk:2181", "ELECTION_NAME": "demo",
           "HTTP_PORT": "0", "POD_NAME": "pod-0", "POD_NAMESPACE": "ns",
           "K8S_DISABLED": "0" if k8s else "1"}
    argv = ["run"]
    if via_env:
        env[var] = value
    else:
        argv.append(as_flag(flag, value))
    result = outcome(argv, env)
    if rejected_naming(result, var if via_env else flag):
        return
    config = assert_valid(result)
    if value == "":
        return  # unset: the default (the host name for the identity, no namespace)
    got = {"--election": config.election, "--identity": config.identity,
           "--namespace": config.namespace, "--role-label": config.role_label}[flag]
    assert got == value


@fuzz(100)
@given(election=DNS_LABEL, pod=st.from_regex(
    r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True),
    namespace=DNS_LABEL, label=st.from_regex(
        r"([a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?",
        fullmatch=True))
def test_good_names_are_accepted(
    base: Path, election: str, pod: str, namespace: str, label: str
) -> None:
    env = {"ROLE_DIR": str(base / "ok"), "ZK_HOSTS": "zk", "HTTP_PORT": "0"}
    argv = ["run", "--election", election, "--identity", pod, "--namespace", namespace,
            "--role-label", label]
    config = assert_valid(outcome(argv, env))
    assert (config.election, config.identity, config.namespace, config.role_label) == (
        election, pod, namespace, label)
    assert config.publishes_to_kubernetes


# -- paths --------------------------------------------------------------------------------

@fuzz(200)
@given(value=st.one_of(VALUES, st.sampled_from(["a/../b", "./x", "x/./y", "ö/€", "\udcff"])),
       via_env=st.booleans())
def test_role_dir(base: Path, value: str, via_env: bool) -> None:
    path = confined(base, value)
    if via_env:
        result = outcome(["run"], minimal_env(base, ROLE_DIR=path))
        name = "ROLE_DIR"
    else:
        result = outcome([*good_run(base)[:-2], "--role-dir", path], env_for(base))
        name = "--role-dir"
    if not rejected_naming(result, name):
        assert str(assert_valid(result).role_dir) == path


def test_role_dir_that_cannot_be(base: Path) -> None:
    blocker = base / "a-file"
    blocker.write_text("")
    for path in ("", str(blocker), str(blocker / "sub"), "/dev/null", "/dev/null/x",
                 "/proc/self/nope", "a\x00b", "\ud800", str(base / ("n" * 300))):
        result = outcome([*good_run(base)[:-2], "--role-dir", path], {})
        assert rejected_naming(result, "--role-dir"), path
    result = outcome(["leave", "--role-dir", "a\x00b"], {})
    assert rejected_naming(result, "--role-dir")


@fuzz(200)
@given(value=st.one_of(VALUES, st.from_regex(r"(/[a-z.]{1,4}){1,3}", fullmatch=True)),
       via_env=st.booleans())
def test_election_parent_and_chroot(base: Path, value: str, via_env: bool) -> None:
    if via_env:
        result = outcome(["run"], minimal_env(base, ELECTION_PARENT=value))
        name = "ELECTION_PARENT"
    else:
        result = outcome(good_run(base, as_flag("--election-parent", value)), env_for(base))
        name = "--election-parent"
    if not rejected_naming(result, name):
        config = assert_valid(result)
        assert config.election_parent == (value or "/leader-election")
    chrooted = outcome(["run"], minimal_env(base, ZK_HOSTS=f"zk:2181/{value}"))
    if not rejected_naming(chrooted, "ZK_HOSTS"):
        assert_valid(chrooted)


@fuzz(150)
@given(value=VALUES, via_env=st.booleans())
def test_kubeconfig(base: Path, value: str, via_env: bool) -> None:
    """Read only when the sidecar starts publishing; here it must be a usable path text."""
    env = env_for(base, ZK_HOSTS="zk", ELECTION_NAME="demo", POD_NAMESPACE="ns",
                  HTTP_PORT="0")
    if via_env:
        result = outcome(["run"], {**env, "KUBECONFIG": value})
    else:
        result = outcome(["run", as_flag("--kubeconfig", value)], env)
    if not rejected_naming(result, "KUBECONFIG" if via_env else "--kubeconfig"):
        config = assert_valid(result)
        assert config.kubeconfig == (value or None)
        if value:
            os.fsencode(value)
            assert "\x00" not in value


# -- hosts, addresses, credentials ----------------------------------------------------------

HOST = st.one_of(
    st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9-]{1,10}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
)
HOST_PORT = st.tuples(HOST, st.one_of(st.none(), st.integers(1, 65535))).map(
    lambda pair: pair[0] if pair[1] is None else f"{pair[0]}:{pair[1]}")


@fuzz(250)
@given(value=st.one_of(
    VALUES,
    st.lists(st.one_of(HOST_PORT, VALUES), min_size=1, max_size=4).map(",".join),
), via_env=st.booleans())
def test_zk_hosts(base: Path, value: str, via_env: bool) -> None:
    if via_env:
        env = env_for(base, ELECTION_NAME="demo", K8S_DISABLED="1", HTTP_PORT="0")
        result = outcome(["run"], {**env, "ZK_HOSTS": value})
    else:
        argv = good_run(base)
        argv[2] = value
        result = outcome(argv, env_for(base))
    if not rejected_naming(result, "ZK_HOSTS" if via_env else "--zk-hosts"):
        assert assert_valid(result).zk_hosts == value.strip()


@fuzz(150)
@given(entries=st.lists(HOST_PORT, min_size=1, max_size=5),
       chroot=st.one_of(st.just(""), st.from_regex(r"(/[A-Za-z0-9_-]{1,8}){1,3}", fullmatch=True)))
def test_good_zk_hosts_are_accepted(base: Path, entries: list[str], chroot: str) -> None:
    value = ",".join(entries) + chroot
    config = assert_valid(outcome([*good_run(base)[:2], value, *good_run(base)[3:]], {}))
    assert config.zk_hosts == value
    assert len(collect_hosts(value)[0]) == len(entries)


@fuzz(200)
@given(value=st.one_of(VALUES, HOST, st.ip_addresses().map(str)), via_env=st.booleans())
def test_http_host(base: Path, value: str, via_env: bool) -> None:
    if via_env:
        result = outcome(["run"], minimal_env(base, HTTP_HOST=value))
    else:
        result = outcome(good_run(base, as_flag("--http-host", value)), env_for(base))
    if not rejected_naming(result, "HTTP_HOST" if via_env else "--http-host"):
        config = assert_valid(result)
        assert config.http_host == (value or "0.0.0.0")
        assert not value.startswith("[")


@fuzz(200)
@given(value=st.one_of(VALUES, st.tuples(TEXT, TEXT).map(":".join)), via_env=st.booleans())
def test_zk_auth(base: Path, value: str, via_env: bool) -> None:
    if via_env:
        result = outcome(["run"], minimal_env(base, ZK_AUTH=value))
    else:
        result = outcome(good_run(base, as_flag("--zk-auth", value)), env_for(base))
    if isinstance(result, Rejected):
        assert "ZK_AUTH" in result.line if via_env else "--zk-auth" in result.line
        if len(value) >= 8:
            assert value not in result.line, "a credential never goes to the log"
        return
    assert assert_valid(result).zk_auth == (value or None)


# -- booleans and choices -----------------------------------------------------------------

@fuzz(200)
@given(value=st.one_of(VALUES, st.sampled_from(
    ["1", "0", "TRUE", "False", " yes ", "No", "ON", "off", "y", "n", "2", "enable"])))
def test_k8s_disabled(base: Path, value: str) -> None:
    env = minimal_env(base, POD_NAMESPACE="ns", K8S_DISABLED=value)
    result = outcome(["run"], env)
    word = value.strip().lower()
    if word in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
        config = assert_valid(result)
        assert config.k8s_enabled == (word in {"0", "false", "no", "off", ""})
    else:
        assert rejected_naming(result, "K8S_DISABLED")
        assert_valid(outcome(["run", "--no-k8s"], env))  # the flag wins over the variable


@fuzz(200)
@given(value=st.one_of(VALUES, st.sampled_from(
    ["debug", "Info", " WARNING ", "warn", "error", "CRITICAL", "fatal", "notset", "10"])),
    via_env=st.booleans())
def test_log_level(base: Path, value: str, via_env: bool) -> None:
    if via_env:
        result = outcome(["run"], minimal_env(base, LOG_LEVEL=value))
    else:
        result = outcome(good_run(base, as_flag("--log-level", value)), env_for(base))
    if not rejected_naming(result, "LOG_LEVEL" if via_env else "--log-level"):
        level = assert_valid(result).log_level
        if value:
            assert level == {"WARN": "WARNING"}.get(value.strip().upper(), value.strip().upper())


SWITCHES = [("run", "--no-k8s"), ("status", "--json"), ("status", "--kubernetes"),
            ("demo", "--no-zk-kill"), ("demo", "--cluster")]


@fuzz(60)
@given(switch=st.sampled_from(SWITCHES), value=VALUES)
def test_switches_take_no_value(base: Path, switch: tuple[str, str], value: str) -> None:
    command, flag = switch
    assert rejected_naming(outcome([command, as_flag(flag, value)], env_for(base)), flag)


# -- the other commands -------------------------------------------------------------------

DEMO_FLAGS = ["--rounds", "--candidates", "--interval", "--session-timeout", "--tick-ms"]


@fuzz(250)
@given(flag=st.sampled_from(DEMO_FLAGS), value=VALUES, cluster=st.booleans())
def test_demo_flags(flag: str, value: str, cluster: bool) -> None:
    argv = ["demo", as_flag(flag, value), *(["--cluster"] if cluster else [])]
    result = outcome(argv, {})
    if rejected_naming(result, flag):
        return
    assert result is None
    args = build_parser().parse_args(argv)
    assert args.rounds >= 0 and 2 <= args.candidates <= 50
    assert math.isfinite(args.interval) and 0 <= args.interval <= 3600
    assert MIN_SESSION_TIMEOUT <= args.session_timeout <= MAX_SESSION_TIMEOUT
    assert 10 <= args.tick_ms <= 10_000


@fuzz(100)
@given(rounds=st.integers(0, 1000), candidates=st.integers(2, 50),
       interval=st.floats(0, 3600), timeout=st.floats(1, 600), tick=st.integers(10, 10_000))
def test_good_demo_flags_are_accepted(
    rounds: int, candidates: int, interval: float, timeout: float, tick: int
) -> None:
    argv = ["demo", "--rounds", str(rounds), "--candidates", str(candidates), "--interval",
            repr(interval), "--session-timeout", repr(timeout), "--tick-ms", str(tick)]
    assert outcome(argv, {}) is None


STATUS = [("--zk-hosts", "ZK_HOSTS"), ("--election", "ELECTION_NAME"),
          ("--election-parent", "ELECTION_PARENT"), ("--zk-auth", "ZK_AUTH"),
          ("--session-timeout", None), ("--namespace", "POD_NAMESPACE"),
          ("--kubeconfig", "KUBECONFIG")]


@fuzz(250)
@given(which=st.sampled_from(STATUS), value=VALUES, via_env=st.booleans())
def test_status_flags(which: tuple[str, str | None], value: str, via_env: bool) -> None:
    flag, var = which
    env = {"ZK_HOSTS": "zk:2181", "ELECTION_NAME": "demo"}
    argv = ["status", "--kubernetes", "--namespace", "ns"]
    if via_env and var is not None:
        env[var] = value
        if var == "POD_NAMESPACE":
            argv = ["status", "--kubernetes"]
    else:
        argv.append(as_flag(flag, value))
    result = outcome(argv, env)
    if not rejected_naming(result, flag, *([var] if var else []), "--namespace"):
        assert result is None


@fuzz(150)
@given(command=st.sampled_from(["leave", "demo-app"]), value=VALUES,
       port=st.one_of(st.none(), VALUES), via_env=st.booleans())
def test_leave_and_demo_app(
    base: Path, command: str, value: str, port: str | None, via_env: bool
) -> None:
    argv = [command]
    env: dict[str, str] = {}
    if via_env:
        env["ROLE_DIR"] = value
    else:
        argv.append(as_flag("--role-dir", value))
    if command == "demo-app" and port is not None:
        argv.append(as_flag("--port", port))
    result = outcome(argv, env)
    if not rejected_naming(result, "ROLE_DIR", "--role-dir", "--port"):
        assert result is None


# -- every variable at once, and whole command lines ----------------------------------------

ENV_VARS = ["ZK_HOSTS", "ELECTION_NAME", "ELECTION_PARENT", "ZK_AUTH", "ZK_SESSION_TIMEOUT",
            "POD_NAME", "POD_NAMESPACE", "ROLE_DIR", "ROLE_LABEL", "HTTP_PORT", "HTTP_HOST",
            "ELECTOR_PORT", "K8S_DISABLED", "KUBECONFIG", "LOG_LEVEL"]


@fuzz(300)
@given(values=st.dictionaries(st.sampled_from(ENV_VARS), VALUES, max_size=len(ENV_VARS)))
def test_environment(base: Path, values: dict[str, str]) -> None:
    env = minimal_env(base, **values)
    env["ROLE_DIR"] = confined(base, env["ROLE_DIR"])
    result = outcome(["run"], env)
    if not rejected_naming(result, *ENV_VARS, "host name", "elector port"):
        assert_valid(result)


def _flags() -> dict[str, list[str]]:
    """The real flags of every command, read from the parser."""
    parser = build_parser()
    commands = next(
        action for action in parser._actions if action.dest == "command"
    ).choices
    assert commands is not None
    return {
        name: sorted(
            option for action in sub._actions for option in action.option_strings
            if option not in ("-h", "--help")
        )
        for name, sub in commands.items()
    }


FLAGS = _flags()
TOKEN = st.one_of(
    st.tuples(st.just("="), st.sampled_from(sorted({f for fs in FLAGS.values() for f in fs})),
              VALUES),
    st.tuples(st.just(" "), st.sampled_from(sorted({f for fs in FLAGS.values() for f in fs})),
              VALUES.filter(lambda v: not v.startswith("-"))),
    st.tuples(st.just("flag"), st.sampled_from(sorted({f for fs in FLAGS.values() for f in fs})),
              st.just("")),
    st.tuples(st.just("raw"), st.just(""), VALUES),
)


def _may_be_role_dir(token: str) -> bool:
    """A token argparse could take for --role-dir (or an abbreviation of it)."""
    option = token.split("=", 1)[0]
    return len(option) > 2 and "--role-dir".startswith(option)


def _is_help(token: str) -> bool:
    option = token.split("=", 1)[0]
    return token.startswith("-h") or (
        len(option) > 2 and ("--help".startswith(option) or "--version".startswith(option))
    )


@fuzz(400)
@given(command=st.one_of(st.sampled_from(sorted(FLAGS)), VALUES),
       tokens=st.lists(TOKEN, max_size=8),
       env=st.dictionaries(st.sampled_from(ENV_VARS), VALUES, max_size=4))
def test_whole_command_lines(
    base: Path, command: str, tokens: list[tuple[str, str, str]], env: dict[str, str]
) -> None:
    argv = [command]
    for kind, flag, value in tokens:
        if kind == "raw" and _may_be_role_dir(value):
            kind, flag, value = "=", "--role-dir", value.partition("=")[2]
        if flag == "--role-dir":  # run creates it: never outside `base`
            kind, value = "=", confined(base, value)
        if kind == "=":
            argv.append(as_flag(flag, value))
        elif kind == " ":
            argv += [flag, value]
        elif kind == "flag":
            argv.append(flag)
        else:
            argv.append(value)
    environment = {**env_for(base), **env}
    environment["ROLE_DIR"] = confined(base, environment["ROLE_DIR"])
    try:
        result = outcome(argv, environment)
    except SystemExit as exit_:  # --help or --version (or an abbreviation) was asked for
        assert exit_.code == 0 and any(_is_help(token) for token in argv), argv
        return
    if isinstance(result, Config):
        assert command == "run"
        assert_valid(result)


# -- the real process: argv from bytes --------------------------------------------------------

@pytest.mark.parametrize("value", [b"\xff\xfe", b"caf\xc3\xa9", b"a\nb", b"9" * 100_000])
def test_real_argv_bytes_exit_2_with_one_line(base: Path, value: bytes) -> None:
    """Undecodable argv bytes reach Python as lone surrogates (surrogateescape)."""
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--zk-hosts", "zk:2181",
         b"--election=" + value, "--role-dir", str(base / "ok")],
        capture_output=True, timeout=60, check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 2, result.stderr
    assert b"Traceback" not in result.stderr
    assert result.stderr.count(b"\n") == 1 and result.stderr.startswith(PREFIX.encode())
    assert b"--election" in result.stderr


@pytest.mark.parametrize(("host", "port"), [
    ("10.96.0.1", "44x3"), ("10.96.0.1", "0"), ("10.96.0.1", "70000"), ("10.96.0.1", "-1"),
    ("evil.example/x?", "443"), ("user@10.96.0.1", "443"), ("", "443"), ("a b", "443"),
    ("10.96.0.1\n", "4 43"),
])
def test_the_kubelets_api_address_is_checked_before_it_reaches_a_url(
    monkeypatch: pytest.MonkeyPatch, host: str, port: str
) -> None:
    """In a pod the API's address comes from KUBERNETES_SERVICE_HOST and _PORT: a value
    that is no host or port stops the sidecar with one line (a configuration error)."""
    from sidecar import kubeapi

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    with pytest.raises(kubeapi.KubernetesConfigError) as error:
        kubeapi._from_service_account()
    assert "\n" not in str(error.value) and "KUBERNETES_SERVICE_" in str(error.value)


def test_the_kubelets_api_address_in_the_usual_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    from sidecar import kubeapi

    for host, port, server in (("10.96.0.1", "443", "https://10.96.0.1:443"),
                               ("fd00::1", "6443", "https://[fd00::1]:6443"),
                               ("kubernetes.default.svc", "", "https://kubernetes.default.svc:443")):
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
        assert kubeapi._from_service_account().server == server
