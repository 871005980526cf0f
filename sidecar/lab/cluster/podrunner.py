"""A kubelet stand-in for the one container that matters: the leader-sidecar.

kwok's nodes run no containers: kwok marks a bound pod Running and Ready, gives it an
address, and deletes it as soon as it gets a deletionTimestamp. `PodRunner` watches the
pods of one namespace that are bound to a node and runs each pod's `leader-sidecar`
container as a local process, the way the kubelet would run it:

- command: the chart's image has `leader-sidecar` as its entrypoint; the runner runs
  `python -m sidecar` with the container's `args`;
- env: `value`; `valueFrom.fieldRef` (the downward API: `metadata.name`,
  `metadata.namespace`, `metadata.uid`, `spec.nodeName`, `spec.serviceAccountName`,
  `status.podIP`); `secretKeyRef` and `configMapKeyRef`, read through the API as the
  kubelet reads them; a later entry of the same name wins;
- volumes: the role directory (the container's mount of the pod's `role-dir` emptyDir)
  is a directory of that pod on tmpfs (`/dev/shm` when present), as `medium: Memory`
  has it; `ROLE_DIR` is pointed at it;
- API access: a token for the pod's ServiceAccount from the TokenRequest API, bound to
  the pod, asked for as the kubelet asks (3607 s, which the apiserver extends for as long
  as the pod lives), in a file, and a kubeconfig naming that `tokenFile` and the
  apiserver's CA (`KUBECONFIG`); a restarted container gets a fresh token. Every
  process here shares one file system, so the fixed in-cluster paths under
  `/var/run/secrets` cannot be per pod;
- network: the processes share this machine's loopback, so each pod's HTTP port gets a
  free loopback port (`HTTP_PORT`, `HTTP_HOST=127.0.0.1`); `port(pod)` tells which;
- lifecycle: on the pod's deletionTimestamp the runner runs the sidecar container's
  preStop hook (the chart's `exec` of `leader-sidecar leave`), sends SIGTERM, and
  SIGKILL after `terminationGracePeriodSeconds`; for a native sidecar (an init container
  with `restartPolicy: Always`) only once the application would have exited, after its
  `sleep` preStop hook, as the kubelet stops native sidecars after the main containers.
  Until the process is gone the runner holds a finalizer on the pod, so the pod stays
  Terminating as under a kubelet;
- restarts: per `restartPolicy` (StatefulSet pods: Always), after a short back-off;
  `kill(pod)` sends SIGKILL, as a crash or an OOM kill would;
- readiness: kwok sets Ready itself when it marks a pod Running; the runner owns the
  condition from then on (never before: that would race kwok's own patch) and sets it
  from the container's readiness probe (`/readyz`, not ready after `failureThreshold`
  failures in a row, as the kubelet counts), putting it back whenever the pod says
  otherwise, so EndpointSlices follow the sidecar;
- the application container is not run; `app_sigterm_at(pod)` tells when a kubelet
  would have sent it SIGTERM: when the runner saw the deletion, plus its `sleep` preStop.

Not done (a real kubelet's job, see the kind flow): images, the application container,
startup and liveness probes, resource limits, security contexts, pod networking.
How a container becomes a process's environment is `container.py`; this module is the
life cycle. Both are for the tests, benchmarks and the cluster demo only; the sidecar
never imports them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes

from sidecar.lab.cluster.container import ContainerEnvironment, failure_threshold, sidecar_container
from sidecar.lab.cluster.control_plane import LocalCluster
from sidecar.lab.ensemble import free_port

ENTRYPOINT = "leader-sidecar"  # the image's console script, in exec hooks

log = logging.getLogger(__name__)

FINALIZER = "lab.leader-sidecar.dev/pod-runner"
RESTART_BACKOFF = 1.0
PROBE_PERIOD = 0.5


@dataclasses.dataclass
class RunningPod:
    """One pod's sidecar process and what the runner made for it."""

    name: str
    uid: str
    directory: Path
    role_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # the running container's, for its exec hooks
    marked_running: bool = False  # kwok has given the pod its address and phase
    restarts: int = 0
    stopping: bool = False
    ready: bool | None = None
    failures: int = 0
    thread: threading.Thread | None = None
    # Guards `process` against `stopping`: a start racing a stop must not leave a sidecar
    # that nobody stops.
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class PodRunner:
    def __init__(self, cluster: LocalCluster, namespace: str, workdir: Path,
                 selector: str = "app.kubernetes.io/component=app") -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.selector = selector
        self.workdir = workdir
        shm = Path("/dev/shm")
        self.tmpfs = (shm if shm.is_dir() else workdir) / f"pod-runner-{os.getpid()}-{namespace}"
        # The client's own annotations are partial: the runner handles its objects as Any.
        self.client: Any = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(cluster.kubeconfig))
        self.core: Any = kubernetes.client.CoreV1Api(self.client)
        self.environment = ContainerEnvironment(cluster, self.core)
        self.pods: dict[str, RunningPod] = {}
        self.app_sigterms: dict[str, float] = {}  # pod name -> wall time, of the last stop
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watch: Any = None

    # --- public -----------------------------------------------------------------------

    def start(self) -> PodRunner:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tmpfs.mkdir(parents=True, exist_ok=True)
        self._watcher = threading.Thread(target=self._watch_pods, name="pod-runner",
                                         daemon=True)
        self._watcher.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every process at once (SIGKILL after `timeout`), drop the finalizers."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()
        if self._watcher is not None:
            self._watcher.join(10)  # no launch may slip in after the list below
        with self._lock:
            running = list(self.pods.values())
        processes = [process for pod in running if (process := self._mark_stopping(pod))]
        for process in processes:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in processes:
            _wait_or_kill(process, deadline - time.monotonic())
        for pod in running:
            self._release(pod)
        for pod in running:
            if pod.thread is not None:
                pod.thread.join(5)
        shutil.rmtree(self.tmpfs, ignore_errors=True)
        self.client.close()

    def port(self, name: str) -> int:
        return self._pod(name).port

    def app_sigterm_at(self, name: str) -> float | None:
        """Wall time at which the pod's application container would have got SIGTERM in
        its last stop (after its preStop `sleep`), or None if it was not stopped."""
        return self.app_sigterms.get(name)

    def role_dir(self, name: str) -> Path:
        return self._pod(name).role_dir

    def pid(self, name: str) -> int | None:
        process = self._pod(name).process
        return process.pid if process is not None and process.poll() is None else None

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        """Signal the pod's sidecar process (SIGKILL: a crash; it restarts per policy)."""
        process = self._pod(name).process
        if process is not None and process.poll() is None:
            process.send_signal(signum)

    def log_path(self, name: str) -> Path:
        return self._pod(name).directory / "sidecar.log"

    def _pod(self, name: str) -> RunningPod:
        with self._lock:
            for pod in self.pods.values():
                if pod.name == name and not pod.stopping:
                    return pod
        raise KeyError(f"no running pod {name!r}")

    # --- watching ----------------------------------------------------------------------

    def _watch_pods(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
                for event in self._watch.stream(
                        self.core.list_namespaced_pod, self.namespace,
                        label_selector=self.selector, timeout_seconds=60):
                    if self._stopping.is_set():
                        return
                    self._on_pod(event["type"], event["object"])
            except Exception as error:  # the apiserver went away: watch again
                if not self._stopping.is_set():
                    log.info("pod runner: watch ended (%s); watching again", error)
                    time.sleep(0.5)

    def _on_pod(self, kind: str, pod: Any) -> None:
        uid = pod.metadata.uid
        with self._lock:
            known = self.pods.get(uid)
        if kind == "DELETED":
            if known is not None and not known.stopping:
                self._begin_stop(known, pod)
            return
        if known is None:
            if pod.metadata.deletion_timestamp is None and pod.spec.node_name:
                self._launch(pod)
            return
        known.marked_running = known.marked_running or _marked_running(pod)
        if pod.metadata.deletion_timestamp is not None and not known.stopping:
            self._begin_stop(known, pod)
        elif _ready_condition(pod) != known.ready:
            known.ready = None  # someone (kwok) wrote Ready: the next probe puts it right

    # --- one pod -----------------------------------------------------------------------

    def _launch(self, pod: Any) -> None:
        container = sidecar_container(pod)
        if container is None:
            return
        if FINALIZER not in (pod.metadata.finalizers or []):
            self.core.patch_namespaced_pod(pod.metadata.name, self.namespace, {
                "metadata": {"finalizers": [*(pod.metadata.finalizers or []), FINALIZER]}})
        directory = self.workdir / f"{pod.metadata.name}-{pod.metadata.uid[:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        role_dir = self.tmpfs / pod.metadata.uid
        role_dir.mkdir(parents=True, exist_ok=True)
        running = RunningPod(pod.metadata.name, pod.metadata.uid, directory, role_dir,
                             free_port(), marked_running=_marked_running(pod))
        with self._lock:
            self.pods[running.uid] = running
        running.thread = threading.Thread(target=self._supervise, args=(running, pod),
                                          name=f"pod-{running.name}", daemon=True)
        running.thread.start()

    def _supervise(self, running: RunningPod, pod: Any) -> None:
        """Start, restart and probe the container until the pod is going away. A failed
        step (the API briefly away, a token request refused) is retried, as a kubelet does."""
        while not running.stopping and not self._stopping.is_set():
            try:
                if running.process is None or running.process.poll() is not None:
                    if running.process is not None:
                        running.restarts += 1
                        if pod.spec.restart_policy == "Never":
                            return
                        time.sleep(RESTART_BACKOFF)
                        if running.stopping:
                            return
                    self._start_process(running, pod)
                self._probe(running, failure_threshold(pod))
            except Exception as error:
                log.warning("pod runner: %s: %s; retrying", running.name, error)
                time.sleep(RESTART_BACKOFF)
            time.sleep(PROBE_PERIOD)

    def _start_process(self, running: RunningPod, pod: Any) -> None:
        container = sidecar_container(pod)
        assert container is not None
        env = self.environment.environment(pod, container, running.directory, running.role_dir,
                                           running.port)
        running.env = env
        command = [sys.executable, "-m", "sidecar", *(container.args or [])]
        with running.lock, (running.directory / "sidecar.log").open("ab") as out:
            if running.stopping or self._stopping.is_set():
                return
            running.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=running.directory, start_new_session=True)
        log.info("pod runner: %s started (pid %d)", running.name, running.process.pid)

    def _probe(self, running: RunningPod, failure_threshold: int) -> None:
        try:
            url = f"http://127.0.0.1:{running.port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                ready = answer.status == 200
        except OSError:
            ready = False
        running.failures = 0 if ready else running.failures + 1
        if not ready and running.ready is not None and running.failures < failure_threshold:
            return  # a slow answer on a busy machine: the kubelet would not flip yet
        if ready == running.ready or running.stopping or not running.marked_running:
            # Before kwok has marked the pod Running, a status patch of ours would race
            # kwok's own (it then plays its stage twice and the apiserver refuses it).
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = "True" if ready else "False"
        with contextlib.suppress(kubernetes.client.ApiException):
            self.core.patch_namespaced_pod_status(running.name, self.namespace, {"status": {
                "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": now},
                               {"type": "ContainersReady", "status": status,
                                "lastTransitionTime": now}]}})
            running.ready = ready

    # --- stopping ----------------------------------------------------------------------

    def _begin_stop(self, running: RunningPod, pod: Any) -> None:
        self._mark_stopping(running)
        grace = float(pod.spec.termination_grace_period_seconds or 30)
        threading.Thread(target=self._stop_pod, args=(running, pod, grace),
                         name=f"stop-{running.name}", daemon=True).start()

    def _stop_pod(self, running: RunningPod, pod: Any, grace: float) -> None:
        started = time.monotonic()
        app_stop = _app_sleep(pod)
        self.app_sigterms[running.name] = time.time() + app_stop
        self._app_hooks(running, pod)
        if _native(pod):
            # A native sidecar is stopped after the main containers have exited (its
            # preStop hook, then SIGTERM: kubernetes/kubernetes#120620); the application,
            # not run here, exits at its SIGTERM, after its own `sleep` hook.
            self._stopping.wait(app_stop)
        self._pre_stop(running, pod)
        self._terminate(running, grace=max(0.0, grace - (time.monotonic() - started)))
        self._release(running)
        with self._lock:
            self.pods.pop(running.uid, None)
        shutil.rmtree(running.role_dir, ignore_errors=True)

    def _pre_stop(self, running: RunningPod, pod: Any) -> None:
        """The sidecar container's preStop hook: `exec` runs in the container's environment
        (`leader-sidecar` is `python -m sidecar`, as for the entrypoint)."""
        container = sidecar_container(pod)
        hook = container.lifecycle.pre_stop if container and container.lifecycle else None
        if hook is not None and hook.var_exec is not None and hook.var_exec.command:
            command = list(hook.var_exec.command)
            if command[0] == ENTRYPOINT:
                command = [sys.executable, "-m", "sidecar", *command[1:]]
            with contextlib.suppress(OSError, subprocess.TimeoutExpired), (
                running.directory / "prestop.log"
            ).open("ab") as out:
                subprocess.run(command, env=running.env, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd=running.directory, timeout=30,
                               check=False)

    def _app_hooks(self, running: RunningPod, pod: Any) -> None:
        """The application containers' `httpGet` preStop hooks (charts before the control
        socket called the sidecar's port), at once, as the kubelet runs them."""
        for app in pod.spec.containers or []:
            app_hook = app.lifecycle.pre_stop if app.lifecycle else None
            if app_hook is not None and app_hook.http_get is not None:
                url = f"http://127.0.0.1:{running.port}{app_hook.http_get.path or '/'}"
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(url, timeout=5).close()

    @staticmethod
    def _mark_stopping(running: RunningPod) -> subprocess.Popen[bytes] | None:
        """From now on nothing starts; returns the process still running, if any."""
        with running.lock:
            running.stopping = True
            process = running.process
        return process if process is not None and process.poll() is None else None

    def _terminate(self, running: RunningPod, grace: float) -> None:
        process = self._mark_stopping(running)
        if process is not None:
            process.send_signal(signal.SIGTERM)
            _wait_or_kill(process, grace)

    def _release(self, running: RunningPod) -> None:
        """Drop the runner's finalizer (and only it): the pod object may go now."""
        for _ in range(5):
            try:
                pod = self.core.read_namespaced_pod(running.name, self.namespace)
                finalizers = pod.metadata.finalizers or []
                if pod.metadata.uid != running.uid or FINALIZER not in finalizers:
                    return
                index = finalizers.index(FINALIZER)
                self.core.patch_namespaced_pod(running.name, self.namespace, [
                    {"op": "test", "path": "/metadata/uid", "value": running.uid},
                    {"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
                    {"op": "remove", "path": f"/metadata/finalizers/{index}"}])
                return
            except kubernetes.client.ApiException as error:
                if error.status == 404:
                    return
            except Exception as error:  # the apiserver away: stopping must go on
                log.warning("pod runner: cannot release %s: %s", running.name, error)
                return
            time.sleep(0.2)


def _wait_or_kill(process: subprocess.Popen[bytes], grace: float) -> None:
    try:
        process.wait(max(0.0, grace))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _app_sleep(pod: Any) -> float:
    """Seconds of the application containers' preStop `sleep` hooks (the longest)."""
    seconds = 0.0
    for container in pod.spec.containers or []:
        hook = container.lifecycle.pre_stop if container.lifecycle else None
        if hook is not None and hook.sleep is not None:
            seconds = max(seconds, float(hook.sleep.seconds))
    return seconds


def _native(pod: Any) -> bool:
    """The sidecar is a native one: an init container with `restartPolicy: Always`."""
    container = sidecar_container(pod)
    return (container is not None and container.restart_policy == "Always"
            and any(c is container for c in pod.spec.init_containers or []))


def _marked_running(pod: Any) -> bool:
    return bool(pod.status and pod.status.phase == "Running" and pod.status.pod_ip)


def _ready_condition(pod: Any) -> bool | None:
    for condition in (pod.status.conditions or []) if pod.status else []:
        if condition.type == "Ready":
            return bool(condition.status == "True")
    return None


