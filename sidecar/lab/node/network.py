"""The real node's network: one bridge that is both the node's address and the pods' L2,
a blackhole for the Service range, and the packet-filter rules that keep pods on this host.

Addresses (kind's defaults, inside a bridge of our own):
- the bridge `lsnode0` holds 10.244.0.1/24: the node's InternalIP, the pods' gateway, and
  where pods reach the API server (kube-proxy sends the `kubernetes` Service there);
- pods get 10.244.0.2 .. 10.244.0.254 from the CNI bridge plugin on that same bridge;
- Services get 10.96.0.0/16, with `blackhole 10.96.0.0/16` on the host: a ClusterIP that
  kube-proxy has not programmed goes nowhere instead of out of the default route.

Guaranteed: pods never send traffic off this machine. They have no default route (only
the pod subnet and the Service range), nothing masquerades them, and `LSNODE-FORWARD`
drops anything from the bridge that would leave on another interface. The API server's
port answers on loopback and on the bridge only (`LSNODE-INPUT`).

NetworkPolicies: `queue_pod_connections()` sends the first packet of every new connection
from or to a pod (but those of the host's root: the kubelet's probes) to the agent's
NFQUEUE, where kube-network-policies accepts or drops it by the policies. The agent's own
nftables rules would do that, but its `queue` expression needs the kernel's nft_queue,
which this machine's kernel lacks (it has xt_NFQUEUE, which iptables uses): its table
fails to load, with "netlink receive: no such file or directory" in its log, so
`LSNODE-NETPOL` (mangle POSTROUTING, after DNAT and across the bridge through
br_netfilter) does the queueing instead, for every pod rather than the policed ones
only: the agent accepts the others. (Where a kernel has nft_queue, the agent's table
loads too and a connection is judged twice, to the same verdict.) Fail closed: while no
agent listens, no new pod connection goes through.

`down()` removes the bridge, the route, every chain named KUBE-*, CNI-* or LSNODE-* (with
the jumps to them) in IPv4 and IPv6, the NetworkPolicy agent's nftables table
(`inet kube-network-policies`), and restores `net.ipv4.ip_forward`; it can run twice, or
after a crash, and finds nothing the second time.
Not guaranteed: two real nodes on one machine (the bridge name is fixed; `RealNode`
holds a lock for it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import shlex
import shutil
import subprocess
from pathlib import Path

BRIDGE = "lsnode0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"  # the first address of the range: the `kubernetes` Service
DNS_SERVICE_IP = "10.96.0.10"
OUR_CHAINS = ("KUBE-", "CNI-", "LSNODE-")
TABLES = ("filter", "nat", "mangle", "raw")
FORWARD_SYSCTL = Path("/proc/sys/net/ipv4/ip_forward")
# kube-network-policies' table (its default name; v0.8.0 has no flag for it), on a kernel
# where it loads. Its rules queue the first packet of each connection to or from a
# policed pod to the agent: left behind without the agent, they drop those connections.
POLICY_TABLE = ("inet", "kube-network-policies")
POLICY_CHAIN = "LSNODE-NETPOL"
NFQUEUE_STATS = Path("/proc/net/netfilter/nfnetlink_queue")


class NetworkError(Exception):
    """The node's network could not be set up; the message is one line."""


def run(*command: str, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"{shlex.join(command)}: {result.stderr.strip()}")
    return result.stdout


@dataclasses.dataclass
class NodeNetwork:
    state_dir: Path  # keeps the ip_forward value found at up()

    @property
    def prefix_length(self) -> int:
        return ipaddress.ip_network(POD_CIDR).prefixlen

    def up(self, api_port: int) -> None:
        if not Path(f"/sys/class/net/{BRIDGE}").exists():
            run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "replace", f"{NODE_IP}/{self.prefix_length}", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        run("ip", "route", "replace", "blackhole", SERVICE_CIDR)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        saved = self.state_dir / "ip_forward"
        if not saved.exists():
            saved.write_text(FORWARD_SYSCTL.read_text())
        # Routing between pods and the host (a ClusterIP DNATed back onto the bridge).
        FORWARD_SYSCTL.write_text("1\n")
        self._filter_rules(api_port)

    def _filter_rules(self, api_port: int) -> None:
        for chain in ("LSNODE-FORWARD", "LSNODE-INPUT"):
            run("iptables", "-N", chain, check=False)
            run("iptables", "-F", chain)
        run("iptables", "-A", "LSNODE-FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
        run("iptables", "-A", "LSNODE-INPUT", "-i", "lo", "-j", "RETURN")
        run("iptables", "-A", "LSNODE-INPUT", "-i", BRIDGE, "-j", "RETURN")
        run("iptables", "-A", "LSNODE-INPUT", "-j", "DROP")
        _ensure_jump("FORWARD", "-j", "LSNODE-FORWARD")
        _ensure_jump("INPUT", "-p", "tcp", "--dport", str(api_port), "-j", "LSNODE-INPUT")

    def down(self) -> None:
        with contextlib.suppress(NetworkError):
            run("ip", "link", "del", BRIDGE, check=Path(f"/sys/class/net/{BRIDGE}").exists())
        run("ip", "route", "del", "blackhole", SERVICE_CIDR, check=False)
        for tool in ("iptables", "ip6tables"):
            remove_chains(tool)
        remove_policy_table()
        saved = self.state_dir / "ip_forward"
        if saved.exists():
            FORWARD_SYSCTL.write_text(saved.read_text())
            saved.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.state_dir.rmdir()


def _ensure_jump(chain: str, *rule: str, table: str = "filter") -> None:
    if subprocess.run(["iptables", "-t", table, "-C", chain, *rule], capture_output=True,
                      check=False).returncode != 0:
        run("iptables", "-t", table, "-I", chain, "1", *rule)


def ours(chain: str) -> bool:
    return chain.startswith(OUR_CHAINS)


def remove_chains(tool: str) -> list[str]:
    """Delete every rule that jumps to one of our chains, then the chains themselves, in
    every table: kube-proxy's, the kubelet's canaries and KUBE-FIREWALL, the CNI plugins'
    and ours. Returns the chains removed."""
    removed = []
    for table in TABLES:
        saved = run(f"{tool}-save", "-t", table, check=False)
        chains = [line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")]
        for line in saved.splitlines():
            words = shlex.split(line) if line.startswith("-A ") else []
            target = words[words.index("-j") + 1] if "-j" in words else ""
            if words and not ours(words[1]) and ours(target):
                run(tool, "-t", table, "-D", *words[1:], check=False)
        for chain in filter(ours, chains):
            run(tool, "-t", table, "-F", chain, check=False)
        for chain in filter(ours, chains):
            run(tool, "-t", table, "-X", chain, check=False)
            removed.append(f"{tool} {table} {chain}")
    return removed


def queue_bound(queue: int) -> bool:
    """A program listens on NFQUEUE `queue` (the agent binds it once its caches synced)."""
    try:
        lines = NFQUEUE_STATS.read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[:1] == [str(queue)] for line in lines)


def queue_pod_connections(queue: int) -> None:
    """`LSNODE-NETPOL`: new connections from or to the pod subnet go to NFQUEUE `queue`,
    as the agent's own `postrouting` chain would send them (see the module's docstring)."""
    run("iptables", "-t", "mangle", "-N", POLICY_CHAIN, check=False)
    run("iptables", "-t", "mangle", "-F", POLICY_CHAIN)
    rules = [
        # `meta skuid 0 accept` of upstream: what root on the host sends (the kubelet's
        # probes) is never policed.
        ["-m", "owner", "--uid-owner", "0", "-j", "RETURN"],
        # Only the first packet of a connection gets a verdict.
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
        ["-s", POD_CIDR, "-j", "NFQUEUE", "--queue-num", str(queue)],
        ["-d", POD_CIDR, "-j", "NFQUEUE", "--queue-num", str(queue)],
    ]
    for rule in rules:
        run("iptables", "-t", "mangle", "-A", POLICY_CHAIN, *rule)
    _ensure_jump("POSTROUTING", "-j", POLICY_CHAIN, table="mangle")


def policy_table_present() -> bool:
    """The NetworkPolicy agent's table exists (the agent has synced and programmed it)."""
    if shutil.which("nft") is None:
        return False
    return subprocess.run(["nft", "list", "table", *POLICY_TABLE], capture_output=True,
                          check=False, timeout=30).returncode == 0


def remove_policy_table() -> None:
    """Delete the agent's table, whether or not the agent removed it itself: it does so
    only on SIGINT, and not at all when it crashed or was killed."""
    if policy_table_present():
        run("nft", "delete", "table", *POLICY_TABLE)


def leftovers() -> list[str]:
    """What `down()` must have removed, if any of it is still there."""
    found = []
    if policy_table_present():
        found.append(f"nftables table {' '.join(POLICY_TABLE)}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"link {BRIDGE}")
    if "blackhole" in run("ip", "route", "show", SERVICE_CIDR, check=False):
        found.append(f"route blackhole {SERVICE_CIDR}")
    for tool in ("iptables", "ip6tables"):
        for table in TABLES:
            saved = run(f"{tool}-save", "-t", table, check=False)
            found += [f"{tool} {table} {line[1:].split()[0]}" for line in saved.splitlines()
                      if line.startswith(":") and ours(line[1:])]
    return found
