"""Client certificates and kubeconfigs for the node's components, signed by the local
control plane's CA (kwokctl's `pki/ca.crt` and `ca.key`) with `openssl`.

- the kubelet is `system:node:<name>` in `system:nodes`: the Node authorizer and the
  NodeRestriction admission plugin confine it to its own Node and its pods;
- kube-proxy is `system:kube-proxy`, bound by the built-in `system:node-proxier` role;
- the local-path provisioner is `system:local-path-provisioner`, bound by `addons.py`;
- the NetworkPolicy agent (kube-network-policies v0.8.0) takes no kubeconfig: it reads
  client-go's in-cluster files, so it gets those instead, a token of the ServiceAccount
  `kube-system/kube-network-policies` (bound by `addons.py`) and the cluster's CA, under
  a directory that only its own mount namespace sees at `/var/run`.

Guaranteed: a key or token never leaves the node's directory; certificates and tokens
last 30 days.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# Where client-go's rest.InClusterConfig() reads a pod's credentials, under /var/run.
SERVICE_ACCOUNT_DIR = Path("secrets/kubernetes.io/serviceaccount")
TOKEN_LIFETIME = "720h"  # 30 days, as the certificates


class PkiError(Exception):
    """openssl failed; the message is one line."""


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False,
                            timeout=60)
    if result.returncode != 0:
        raise PkiError(f"openssl {args[0]}: {result.stderr.strip().splitlines()[-1:]}")


def issue_client_cert(ca_dir: Path, out_dir: Path, name: str, common_name: str,
                      organization: str = "") -> tuple[Path, Path]:
    """A client certificate `<out_dir>/<name>.crt` (and `.key`) for `common_name`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key, csr, crt = (out_dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-subj", subject, "-out", str(csr))
    extensions = out_dir / f"{name}.ext"
    extensions.write_text("keyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.crt"),
             "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-CAserial",
             str(out_dir / "ca.srl"), "-days", "30", "-extfile", str(extensions),
             "-out", str(crt))
    csr.unlink()
    extensions.unlink()
    key.chmod(0o600)
    return crt, key


def kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    path.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: {server}
      certificate-authority: {ca}
users:
  - name: {user}
    user:
      client-certificate: {cert}
      client-key: {key}
contexts:
  - name: {user}
    context:
      cluster: local
      user: {user}
current-context: {user}
""")
    path.chmod(0o600)
    return path


def in_cluster_files(run_dir: Path, ca: Path, token: str, namespace: str) -> Path:
    """The files a pod's ServiceAccount mount holds, under `run_dir`: what a program that
    only knows `rest.InClusterConfig()` reads once `run_dir` is its `/var/run`."""
    target = run_dir / SERVICE_ACCOUNT_DIR
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca, target / "ca.crt")
    (target / "namespace").write_text(namespace)
    token_file = target / "token"
    token_file.touch(mode=0o600)  # before the token is in it
    token_file.write_text(token.strip())
    return target
