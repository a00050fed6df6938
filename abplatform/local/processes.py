"""Server subprocesses of the local stack: start one, wait until it is healthy, stop it.

Each process logs to a file; :class:`ServiceProcess` knows its URL, its log tail and how
to stop it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from abplatform.local.tls import LocalCertificate

__all__ = ["LOOPBACK", "ServiceProcess", "free_port", "serve_command", "start_service"]

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it; it can be taken
    again before use, which is unlikely for the ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ServiceProcess:
    """A server subprocess started by ``start_service``.

    Attributes:
        name: label used in logs and errors.
        target: what it serves ("module:Name").
        host, port: where it listens.
        process: the ``subprocess.Popen``.
        log_path: file receiving its stdout and stderr.
        ca_file: certificate to trust when it serves HTTPS; None for HTTP.
    """

    name: str
    target: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    ca_file: Path | None = None
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    restarts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8101`` (``https`` when ``ca_file`` is set)."""
        scheme = "https" if self.ca_file is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def is_running(self) -> bool:
        """Whether the process has not exited."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of its log."""
        return _tail(self.log_path, lines)

    def wait_healthy(self, timeout_s: float = 120.0, path: str = "/health") -> None:
        """Poll ``GET {url}{path}`` every 0.1 s until it answers 200.

        Raises:
            RuntimeError: the process exited (the message has its exit code and log tail).
            TimeoutError: no 200 within ``timeout_s`` seconds.
        """
        verify: ssl.SSLContext | bool = True
        if self.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + timeout_s
        with httpx.Client(verify=verify, trust_env=False, timeout=5.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise RuntimeError(
                        f"{self.name} ({self.target}) exited with code {code} before it was "
                        f"healthy; log {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + path).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.name} ({self.target}) not healthy at {self.url}{path} after "
                        f"{timeout_s:g} s; log {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def restart(self) -> None:
        """Start the same command again on the same port (after it exited), appending to
        its log; as fal starts a new runner when one dies. Counts ``restarts``.

        Raises:
            RuntimeError: it is still running.
        """
        if self.is_running():
            raise RuntimeError(f"{self.name} is running; stop it before a restart")
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            self.command,
            env=dict(self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.restarts += 1

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s`` seconds, then SIGKILL. Idempotent.

        Returns:
            The exit code (negative: killed by that signal).
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_command(
    target: str, host: str, port: int, certificate: LocalCertificate | None, python: str
) -> list[str]:
    """``python -m abplatform.local.serve TARGET`` on ``host:port`` (HTTPS with
    ``certificate``)."""
    cmd = [python, "-m", "abplatform.local.serve", target, "--host", host, "--port", str(port)]
    if certificate is not None:
        cmd += ["--ssl-certfile", str(certificate.cert_path)]
        cmd += ["--ssl-keyfile", str(certificate.key_path)]
    return cmd


def start_service(
    target: str,
    port: int,
    env: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    host: str = LOOPBACK,
    log_path: Path | None = None,
    certificate: LocalCertificate | None = None,
    wait: bool = True,
    startup_timeout_s: float = 120.0,
    health_path: str = "/health",
    inherit_env: bool = True,
    python: str = sys.executable,
    command: Sequence[str] | None = None,
) -> ServiceProcess:
    """Start ``python -m abplatform.local.serve TARGET`` (or ``command``) as a subprocess.

    Args:
        target: "module:Name" of a ``fal.App``, FastAPI app or app factory
            (``abplatform.local.serve.build_asgi_app``), e.g. "abplatform.router:ABRouter".
        port: TCP port to listen on (see ``free_port``).
        env: environment variables, over ``os.environ`` unless ``inherit_env`` is false.
        name: label for logs and errors; default the target's class name.
        host: bind address.
        log_path: file for its output (truncated); default ``<tmp>/abplatform-<name>-<port>.log``.
        certificate: serve HTTPS with this certificate (HTTP if None).
        wait: block until ``GET health_path`` answers 200 (``setup()`` has finished).
        startup_timeout_s: how long ``wait`` waits, in seconds.
        health_path: path polled by ``wait``.
        inherit_env: start from a copy of ``os.environ``.
        python: interpreter to run.
        command: run this instead of serving ``target`` (``target`` then only labels it),
            e.g. a Streamlit server; it must listen on ``host:port``.

    Returns:
        The running service. Stop it with ``.stop()`` or use it as a context manager.

    Raises:
        RuntimeError / TimeoutError: with ``wait``, it exited or did not become healthy
        (the process is stopped first; the message carries its log tail).
    """
    name = name or target.rpartition(":")[2].lower()
    if log_path is None:
        log_path = Path(tempfile.gettempdir()) / f"abplatform-{name}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ) if inherit_env else {}
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = list(command) if command else serve_command(target, host, port, certificate, python)
    log = open(log_path, "wb")  # noqa: SIM115 - closed by ServiceProcess.stop
    try:
        process = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    except BaseException:
        log.close()
        raise
    service = ServiceProcess(
        name=name,
        target=target,
        host=host,
        port=port,
        process=process,
        log_path=log_path,
        ca_file=certificate.cert_path if certificate is not None else None,
        command=tuple(cmd),
        env=full_env,
        _log=log,
    )
    if wait:
        try:
            service.wait_healthy(startup_timeout_s, health_path)
        except BaseException:
            service.stop()
            raise
    return service
