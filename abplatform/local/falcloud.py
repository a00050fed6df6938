"""Run the local stand-in for fal's cloud: model backends plus the queue/run gateway.

``LocalFal`` starts, as subprocesses on 127.0.0.1:

* each backend app (default ``backends.model_v1:ModelV1`` and ``backends.model_v2:ModelV2``
  on tiny offline pipelines (``abplatform.local.pipelines``), and the image tools
  ``backends.image_tools:Upscale`` and ``RemoveBackground`` for pipeline variants) over
  HTTP, via ``python -m abplatform.local.serve``, with images returned as data URIs;
* the queue/run gateway (``abplatform.local.gateway``) over HTTPS with a self-signed
  certificate, routing fal app ids ("abplatform/model-v1", ...) to those apps.

Any process started with ``client_env()`` in its environment (set *before* fal_client is
imported: it reads its hosts at import) reaches the backends through unmodified
``fal_client`` calls::

    with LocalFal(Path(".abplatform/localfal")) as stack:
        env = {**os.environ, **stack.client_env()}
        subprocess.run([sys.executable, "my_client.py"], env=env, check=True)

Or from a shell: ``python -m abplatform.local.falcloud --state-dir .abplatform`` prints
``export`` lines and runs until interrupted.

Subprocess logs go to ``<state_dir>/logs/<name>.log``. Everything is stopped on exit
(SIGTERM, then SIGKILL after ``stop_timeout_s``), also at interpreter exit if ``stop()``
was not reached.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from abplatform.local.processes import (
    LOOPBACK,
    ServiceProcess,
    free_port,
    start_service,
)
from abplatform.local.queue import QUEUE_CONFIG_ENV, Fault, RouteSpec
from abplatform.local.tls import LocalCertificate, ensure_local_certificate, ensure_trust_bundle

__all__ = ["DEFAULT_BACKENDS", "BackendSpec", "LocalFal"]

QUEUE_TARGET = "abplatform.local.gateway:queue_app_from_env"
SUPERVISE_PERIOD_S = 0.25
MAX_RESTARTS = 5


@dataclass(frozen=True)
class BackendSpec:
    """A backend app to serve locally.

    Attributes:
        target: "module:Class" of the ``fal.App``.
        weights_env: environment variable the app reads its weights location from
            (None: the app needs no weights).
        pipeline: name of the tiny pipeline (key of ``ensure_tiny_pipelines``) to use.
        concurrency: queued requests the gateway runs on it at once (its
            ``max_multiplexing`` times one runner).
        env: more environment variables for the app.
    """

    target: str
    weights_env: str | None = None
    pipeline: str | None = None
    concurrency: int = 1
    env: Mapping[str, str] = field(default_factory=dict)


#: fal app id -> backend, as deployed: ``fal deploy ... --app-name model-v1`` under the
#: "abplatform" owner.
DEFAULT_BACKENDS: dict[str, BackendSpec] = {
    "abplatform/model-v1": BackendSpec(
        target="backends.model_v1:ModelV1", weights_env="MODEL_V1_WEIGHTS", pipeline="model-v1"
    ),
    "abplatform/model-v2": BackendSpec(
        target="backends.model_v2:ModelV2", weights_env="MODEL_V2_WEIGHTS", pipeline="model-v2"
    ),
    # The later steps of a pipeline variant (Pillow only: light to serve).
    "abplatform/upscale": BackendSpec(target="backends.image_tools:Upscale", concurrency=4),
    "abplatform/remove-background": BackendSpec(
        target="backends.image_tools:RemoveBackground", concurrency=4
    ),
}


class LocalFal:
    """The local stand-in for fal's cloud: backends + HTTPS queue/run gateway.

    Use as a context manager (``start()`` on enter, ``stop()`` on exit). Starting takes
    about 5-10 s (the backends import torch and diffusers; the first start also builds
    the tiny pipelines, about 4 s).

    Attributes (after ``start()``):
        certificate: the gateway's TLS certificate.
        trust_bundle: CA bundle (local certificate + public roots) for ``SSL_CERT_FILE``.
        pipelines: tiny pipeline name -> folder.
        backend_urls: fal app id -> local base URL of that backend.
        queue: the gateway's ``ServiceProcess``.
        services: every process started, by name (backends, gateway, ``start_service``).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        backends: Mapping[str, BackendSpec] | None = None,
        queue_port: int | None = None,
        backend_ports: Mapping[str, int] | None = None,
        extra_routes: Mapping[str, str | RouteSpec] | None = None,
        torch_threads: int = 1,
        startup_timeout_s: float = 180.0,
        stop_timeout_s: float = 10.0,
        supervise: bool = True,
    ) -> None:
        """Configure (nothing starts until ``start()``).

        Args:
            state_dir: folder for certificates (``tls/``), pipelines (``pipelines/``) and
                logs (``logs/``); created if missing.
            backends: fal app id -> ``BackendSpec``; default ``DEFAULT_BACKENDS``.
            queue_port: gateway port; default a free one.
            backend_ports: fal app id -> port; default free ones.
            extra_routes: more app ids for the gateway (e.g. a router you start yourself
                on a port chosen with ``free_port()``): URL or ``RouteSpec``.
            torch_threads: ``ABPLATFORM_TORCH_THREADS`` of each backend.
            startup_timeout_s: how long to wait for each service to become healthy.
            stop_timeout_s: grace period between SIGTERM and SIGKILL on stop.
            supervise: restart a service that exits (as fal starts a new runner when one
                dies), at most ``MAX_RESTARTS`` times a minute each.
        """
        self.state_dir = Path(state_dir)
        self.backends = dict(backends if backends is not None else DEFAULT_BACKENDS)
        self.queue_port = queue_port if queue_port is not None else free_port()
        ports = dict(backend_ports or {})
        self.backend_ports = {app_id: ports.get(app_id) or free_port() for app_id in self.backends}
        self.extra_routes = {
            k: v if isinstance(v, RouteSpec) else RouteSpec(v)
            for k, v in (extra_routes or {}).items()
        }
        self.torch_threads = torch_threads
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.services: dict[str, ServiceProcess] = {}
        self.backend_urls: dict[str, str] = {
            app_id: f"http://{LOOPBACK}:{port}" for app_id, port in self.backend_ports.items()
        }
        self.certificate: LocalCertificate | None = None
        self.trust_bundle: Path | None = None
        self.pipelines: dict[str, Path] = {}
        self._atexit_registered = False
        self._supervise = supervise
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._restart_times: dict[str, list[float]] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Ensure certificate and pipelines, start backends and gateway, wait for health.

        Raises:
            RuntimeError / TimeoutError: a service failed to start (everything started
            is stopped; the message has the service's log tail).
        """
        from abplatform.local.pipelines import ensure_tiny_pipelines

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.certificate = ensure_local_certificate(self.state_dir / "tls")
        self.trust_bundle = ensure_trust_bundle(self.certificate)
        if any(spec.pipeline for spec in self.backends.values()):
            self.pipelines = ensure_tiny_pipelines(self.state_dir)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            for app_id, spec in self.backends.items():
                env = {
                    "ABPLATFORM_IMAGE_REPOSITORY": "in_memory",
                    "ABPLATFORM_TORCH_THREADS": str(self.torch_threads),
                    "HF_HUB_OFFLINE": "1",
                    **spec.env,
                }
                if spec.weights_env and spec.pipeline:
                    env[spec.weights_env] = str(self.pipelines[spec.pipeline])
                self._start(
                    spec.target, self.backend_ports[app_id], env, name=app_id.replace("/", "--")
                )
            routes = {app_id: self.backend_urls[app_id] for app_id in self.backends} | {
                app_id: r.url for app_id, r in self.extra_routes.items()
            }
            concurrency = {app_id: spec.concurrency for app_id, spec in self.backends.items()} | {
                app_id: r.concurrency for app_id, r in self.extra_routes.items()
            }
            config = json.dumps({"routes": routes, "concurrency": concurrency})
            self._start(
                QUEUE_TARGET,
                self.queue_port,
                {QUEUE_CONFIG_ENV: config},
                name="queue",
                certificate=self.certificate,
            )
            for service in self.services.values():
                service.wait_healthy(self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        if self._supervise:
            self._stopping.clear()
            self._supervisor = threading.Thread(
                target=self._supervise_loop, name="localfal-supervisor", daemon=True
            )
            self._supervisor.start()
        return self

    def _supervise_loop(self) -> None:
        """Restart services that exited, until ``stop()``; give up on one that exits more
        than ``MAX_RESTARTS`` times within a minute (``dead_services`` then reports it)."""
        while not self._stopping.wait(SUPERVISE_PERIOD_S):
            for name, service in list(self.services.items()):
                if service.is_running() or self._stopping.is_set():
                    continue
                now = time.monotonic()
                recent = [t for t in self._restart_times.get(name, []) if now - t < 60.0]
                if len(recent) >= MAX_RESTARTS:
                    continue
                self._restart_times[name] = [*recent, now]
                print(
                    f"localfal: {name} exited with code {service.process.returncode}; "
                    "restarting it",
                    file=sys.stderr,
                    flush=True,
                )
                service.restart()

    def given_up(self) -> list[ServiceProcess]:
        """Services that exited and are not restarted (any, when not supervising)."""
        now = time.monotonic()
        return [
            s
            for name, s in self.services.items()
            if not s.is_running()
            and (
                not self._supervise
                or len([t for t in self._restart_times.get(name, []) if now - t < 60.0])
                >= MAX_RESTARTS
            )
        ]

    def _start(
        self,
        target: str,
        port: int,
        env: Mapping[str, str],
        *,
        name: str,
        certificate: LocalCertificate | None = None,
    ) -> ServiceProcess:
        if name in self.services and self.services[name].is_running():
            raise ValueError(f"a service named {name!r} is already running")
        service = start_service(
            target,
            port,
            env,
            name=name,
            log_path=self.state_dir / "logs" / f"{name}.log",
            certificate=certificate,
            wait=False,
        )
        self.services[name] = service
        return service

    def stop(self) -> None:
        """Stop every service (SIGTERM, then SIGKILL after ``stop_timeout_s``). Idempotent."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5.0)
            self._supervisor = None
        for service in reversed(list(self.services.values())):
            service.stop(self.stop_timeout_s)
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- for callers ---------------------------------------------------------------------

    @property
    def queue(self) -> ServiceProcess:
        """The gateway process."""
        return self.services["queue"]

    @property
    def queue_url(self) -> str:
        """Gateway base URL, e.g. ``https://127.0.0.1:8443`` (run host; queue under /queue)."""
        return f"https://{LOOPBACK}:{self.queue_port}"

    def client_env(self) -> dict[str, str]:
        """Environment for a process that should reach the local apps with fal_client.

        Returns ``FAL_RUN_HOST`` (``127.0.0.1:PORT``), ``FAL_QUEUE_RUN_HOST``
        (``127.0.0.1:PORT/queue``), ``SSL_CERT_FILE`` (a bundle trusting the local
        certificate and the public roots), ``FAL_KEY`` ("local": the gateway ignores it)
        and ``NO_PROXY``/``no_proxy`` extended with the loopback names. Must be in the
        environment before fal_client is imported.

        Raises:
            RuntimeError: called before ``start()``.
        """
        if self.trust_bundle is None:
            raise RuntimeError("LocalFal.start() was not called")
        no_proxy = ",".join(
            p for p in (os.environ.get("NO_PROXY", ""), "127.0.0.1,localhost,::1") if p
        )
        return {
            "FAL_RUN_HOST": f"{LOOPBACK}:{self.queue_port}",
            "FAL_QUEUE_RUN_HOST": f"{LOOPBACK}:{self.queue_port}/queue",
            "SSL_CERT_FILE": str(self.trust_bundle),
            "FAL_KEY": "local-key-id:local-key-secret",  # id:secret, as fal expects
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def start_service(
        self,
        target: str,
        *,
        name: str,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> ServiceProcess:
        """Start another app (e.g. ``"abplatform.router:ABRouter"``) managed by this stack.

        Its log goes to ``<state_dir>/logs/<name>.log`` and it is stopped with the stack.
        To make it reachable through fal_client, ``add_route`` it. Note that ``env`` is
        not merged with ``client_env()``: pass ``{**stack.client_env(), ...}`` if the app
        itself calls other apps with fal_client.

        Raises:
            ValueError: a service of that name is running.
            RuntimeError / TimeoutError: with ``wait``, it did not become healthy.
        """
        service = self._start(target, port or free_port(), env or {}, name=name)
        if wait:
            try:
                service.wait_healthy(self.startup_timeout_s)
            except BaseException:
                service.stop(self.stop_timeout_s)
                raise
        return service

    def add_route(
        self, app_id: str, url: str, concurrency: int = 1, replicas: Sequence[str] = (),
        fault: Fault | None = None,
    ) -> None:  # fmt: skip
        """Route fal app id ``app_id`` ("owner/alias") to ``url`` in the running gateway
        (and round-robin over ``replicas``, more runners of the same app), optionally with
        an injected regression (``fault``: failures, slowdown).

        Raises:
            httpx.HTTPStatusError: the gateway rejected it (invalid id or URL).
        """
        assert self.certificate is not None, "LocalFal.start() was not called"
        verify = ssl.create_default_context(cafile=str(self.certificate.cert_path))
        with httpx.Client(verify=verify, trust_env=False, timeout=10.0) as client:
            resp = client.put(
                f"{self.queue_url}/_localfal/routes/{app_id}",
                json={
                    "url": url, "concurrency": concurrency, "replicas": list(replicas),
                    **({"fail_rate": fault.fail_rate, "slowdown": fault.slowdown} if fault else {}),
                },
            )  # fmt: skip
            resp.raise_for_status()
        self.extra_routes[app_id] = RouteSpec(url, concurrency, tuple(replicas), fault)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m abplatform.local.falcloud``: start the stack, print the client
    environment as ``export`` lines, and run until SIGINT/SIGTERM."""
    import signal

    parser = argparse.ArgumentParser(prog="python -m abplatform.local.falcloud")
    parser.add_argument("--state-dir", type=Path, default=Path(".abplatform/localfal"))
    parser.add_argument("--queue-port", type=int, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with LocalFal(args.state_dir, queue_port=args.queue_port) as stack:
        for key, value in stack.client_env().items():
            print(f"export {key}={value}")
        for app_id, url in stack.backend_urls.items():
            print(f"# {app_id} -> {url}")
        print(f"# gateway {stack.queue_url}; logs in {args.state_dir / 'logs'}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(s.is_running() for s in stack.services.values()):
                time.sleep(1.0)
        for service in stack.services.values():
            if not service.is_running():
                print(f"{service.name} exited; log tail:\n{service.log_tail()}", file=sys.stderr)


if __name__ == "__main__":
    main()
