"""Hosts of their own for the namespaced soak: network namespaces on a bridge of the run's.

`LabNet` makes a bridge `lss<pid>x<n>` (the run's process id in hex, and its count of
LabNets) holding `10.213.<k>.254/24` on this machine and, per `Host`, a network namespace
`lss<pid>x<n>-<name>`
joined to the bridge by a veth pair, with `10.213.<k>.<n>/24` on its `eth0`. The address
range is the run's own, nothing routes beyond the bridge, and nothing is forwarded or
masqueraded: traffic never leaves the machine.
A host runs its processes through `ip netns exec` (`Host.wrapper`), and faults apply inside
its namespace, where nothing else is:

- `drop(peers, direction)`: iptables DROP of packets to (`out`), from (`in`) or to and from
  (`both`) the peers' addresses: a silent partition, one way or both;
- `reject(peers)`: the same with a TCP reset: a refused network, connections closed;
- `lossy(peers, loss, rate_kbit)`: iptables' `statistic` match drops that fraction of the
  packets to the peers, and an HTB class narrows the link to them to `rate_kbit`. This
  kernel has no `netem` (nor `prio`, `fq` or `gact`), so a slow network is made of what TCP
  does with loss (retransmissions after its timeout, 200 ms and more) and the queue of a
  narrow link, rather than a fixed delay;
- `heal()`: flush all of the above.

The bridge's traffic goes through the host's iptables when `br_netfilter` is loaded (the
real node loads it), so an ACCEPT rule for the bridge's own traffic is inserted into
FORWARD for the run, whatever the module's state when the run starts.

Guaranteed: `close()` removes every namespace, the bridge and the FORWARD rule it made,
whatever failed; `remove_leftovers()` removes those of runs that were killed (found by the
process id in their names that no longer runs; processes left in their namespaces are
killed). Needs root, iproute2 and iptables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import itertools
import os
import re
import signal
import subprocess
import zlib
from collections.abc import Iterable, Sequence

PREFIX = "lss"
NETWORK = ipaddress.IPv4Network("10.213.0.0/16")  # a /24 of it per run
DIRECTIONS = ("in", "out", "both")
_COUNT = itertools.count()


class NetnsError(Exception):
    """A namespace, link or rule could not be made (not root, no iproute2 or iptables)."""


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    return result


def available() -> str | None:
    """None when this machine can make namespaces; otherwise why not, in one line."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "tc"):
        if run("which", tool, check=False).returncode != 0:
            return f"no '{tool}': apt-get install iproute2 iptables"
    return None


@dataclasses.dataclass
class Host:
    """One namespace on the bridge: a ZooKeeper server or a sidecar."""

    name: str
    namespace: str
    address: str
    veth: str

    @property
    def wrapper(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)

    def _in(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if command[0] == "iptables":
            command = ("iptables", "-w", *command[1:])  # wait for the xtables lock
        return run(*self.wrapper, *command, check=check)

    def forward_loopback(self, port: int, to: str) -> None:
        """Connections to 127.0.0.1:`port` in this namespace go to `to`:`port` (an address
        of this machine on the bridge): a client here reaches a server that listens there
        under the name its certificate gives, 127.0.0.1. Faults never touch it (nat table)."""
        self._in("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
        self._in("iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1/32", "-p", "tcp",
                 "--dport", str(port), "-j", "DNAT", "--to-destination", f"{to}:{port}")
        self._in("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0",
                 "-s", "127.0.0.1/32", "-j", "SNAT", "--to-source", self.address)

    def drop(self, peers: Iterable[str], direction: str = "both") -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}: {direction!r}")
        for peer in peers:
            if direction in ("out", "both"):
                self._in("iptables", "-A", "OUTPUT", "-d", peer, "-j", "DROP")
            if direction in ("in", "both"):
                self._in("iptables", "-A", "INPUT", "-s", peer, "-j", "DROP")

    def reject(self, peers: Iterable[str]) -> None:
        for peer in peers:
            self._in("iptables", "-A", "OUTPUT", "-d", peer, "-p", "tcp",
                     "-j", "REJECT", "--reject-with", "tcp-reset")
            self._in("iptables", "-A", "INPUT", "-s", peer, "-p", "tcp",
                     "-j", "REJECT", "--reject-with", "tcp-reset")

    def lossy(self, peers: Sequence[str], loss: float, rate_kbit: int) -> None:
        for peer in peers:
            self._in("iptables", "-A", "OUTPUT", "-d", peer, "-m", "statistic",
                     "--mode", "random", "--probability", f"{loss:.4f}", "-j", "DROP")
        self._in("tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb",
                 "default", "1")
        self._in("tc", "class", "replace", "dev", "eth0", "parent", "1:", "classid", "1:1",
                 "htb", "rate", "10gbit")
        self._in("tc", "class", "replace", "dev", "eth0", "parent", "1:", "classid", "1:2",
                 "htb", "rate", f"{rate_kbit}kbit", "ceil", f"{rate_kbit}kbit")
        for peer in peers:
            self._in("tc", "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip",
                     "prio", "1", "u32", "match", "ip", "dst", f"{peer}/32", "flowid", "1:2")

    def heal(self) -> None:
        """Every step is tried, whatever the one before did; the first failure is raised."""
        results = [self._in("iptables", "-F", "INPUT", check=False),
                   self._in("iptables", "-F", "OUTPUT", check=False)]
        self._in("tc", "qdisc", "del", "dev", "eth0", "root", check=False)  # none: fine
        failed = [r for r in results if r.returncode != 0]
        if failed:
            raise NetnsError(f"heal {self.name}: {failed[0].stderr.strip()}")


class LabNet:
    """The run's bridge and its hosts."""

    def __init__(self) -> None:
        self.bridge = f"{PREFIX}{os.getpid():x}x{next(_COUNT)}"
        self.subnet = NETWORK  # a /24 of it, chosen in up()
        self.hosts: dict[str, Host] = {}
        self._forward_rule: tuple[str, ...] | None = None

    @property
    def gateway(self) -> str:
        """This machine's address on the bridge."""
        return str(self.subnet.network_address + 254)

    def up(self) -> LabNet:
        reason = available()
        if reason is not None:
            raise NetnsError(reason)
        try:
            run("ip", "link", "add", self.bridge, "type", "bridge")
            self.subnet = _free_subnet(start=os.getpid() + zlib.crc32(self.bridge.encode()))
            run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
            self._forward_rule = ("FORWARD", "-i", self.bridge, "-o", self.bridge,
                                  "-j", "ACCEPT")
            run("iptables", "-w", "-I", *self._forward_rule)
        except Exception:
            self.close()
            raise
        return self

    def add(self, name: str) -> Host:
        """A namespace `name` on the bridge, with the next address."""
        number = len(self.hosts) + 1
        host = Host(name, f"{self.bridge}-{name}", str(self.subnet.network_address + number),
                    f"{self.bridge}h{number}"[:15])
        self.hosts[name] = host
        run("ip", "netns", "add", host.namespace)
        run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
            "netns", host.namespace)
        run("ip", "link", "set", host.veth, "master", self.bridge, "up")
        run("ip", "-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        run("ip", "-n", host.namespace, "link", "set", "eth0", "up")
        run("ip", "-n", host.namespace, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            run("ip", "netns", "del", host.namespace, check=False)  # its veth goes with it
        self.hosts.clear()
        if self._forward_rule is not None:
            run("iptables", "-w", "-D", *self._forward_rule, check=False)
            self._forward_rule = None
        run("ip", "link", "del", self.bridge, check=False)


def _free_subnet(start: int) -> ipaddress.IPv4Network:
    """A /24 of `NETWORK` no interface of this machine holds an address in, looked for from
    the `start`-th on (runs that start together start at different places)."""
    taken = run("ip", "-4", "-o", "addr", "show", check=False).stdout
    subnets = list(NETWORK.subnets(new_prefix=24))
    for offset in range(len(subnets)):
        subnet = subnets[(start + offset) % len(subnets)]
        first_three = str(subnet.network_address).rsplit(".", 1)[0]
        if f"inet {first_three}." not in taken:
            return subnet
    raise NetnsError(f"every /24 of {NETWORK} is in use")


def _abandoned(name: str) -> bool:
    """`name` is a bridge or namespace of a run whose process is gone."""
    ours = re.fullmatch(rf"{PREFIX}([0-9a-f]+)x[0-9]+(-.+)?", name)
    if ours is None:
        return False
    try:
        os.kill(int(ours.group(1), 16), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_leftovers() -> list[str]:
    """Remove the namespaces and bridges of earlier runs that did not clean up (killed)."""
    removed = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if _abandoned(name):
            pids = run("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:  # a ZooKeeper server or sidecar of the killed run
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", name, check=False)
            removed.append(name)
    for line in run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        name = line.split(":")[1].strip() if ":" in line else ""
        if _abandoned(name):
            run("iptables", "-w", "-D", "FORWARD", "-i", name, "-o", name, "-j", "ACCEPT",
                check=False)
            run("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed
