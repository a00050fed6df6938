"""The whole platform on one machine: database, local fal, router (and dashboard).

:class:`LocalStack` is what ``abplatform up`` and ``abplatform demo`` run, and what the
end-to-end tests start. It composes the pieces without changing any of them:

* PostgreSQL: ``DATABASE_URL`` if set, else the embedded server in ``$ABPLATFORM_HOME/pg``;
  migrations applied.
* fal, locally (:class:`abplatform.local.falcloud.LocalFal`): the two backend ``fal.App``
  classes under uvicorn on tiny offline pipelines, and the queue stand-in over HTTPS.
* The router ``fal.App`` under uvicorn, with ``FAL_RUN_HOST``/``FAL_QUEUE_RUN_HOST``/
  ``SSL_CERT_FILE`` pointing its unmodified ``fal_client`` at the stand-in and
  ``DATABASE_URL`` at the database.
* Optionally the Streamlit dashboard.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from abplatform.local.falcloud import BackendSpec, LocalFal
from abplatform.local.postgres import resolve_url, stop_embedded_postgres
from abplatform.local.processes import ServiceProcess, free_port, start_service
from abplatform.service.database import Database, open_database
from abplatform.settings import Settings

ROUTER_APP_ID = "abplatform/ab-router"
ROUTER_TARGET = "abplatform.router:ABRouter"
DASHBOARD_APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


DASHBOARD_OPTIONS = (
    "--server.headless", "true", "--browser.gatherUsageStats", "false",
    # An operator's dashboard, not a Streamlit development session: no "Deploy" button
    # or developer items in the toolbar (also set in .streamlit/config.toml).
    "--client.toolbarMode", "minimal",
)  # fmt: skip
"""Options of every ``streamlit run`` of the dashboard."""


def dashboard_command(port: int) -> list[str]:
    """The command that serves the Streamlit dashboard on 127.0.0.1:``port``."""
    return [
        sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP), *DASHBOARD_OPTIONS,
        "--server.address", "127.0.0.1", "--server.port", str(port),
    ]  # fmt: skip


class PortInUseError(RuntimeError):
    """A port the stack must listen on is taken (another ``abplatform up``?)."""


def check_port_free(port: int, what: str, option: str) -> None:
    """Raise :class:`PortInUseError` if 127.0.0.1:``port`` cannot be bound by a server.

    ``SO_REUSEADDR``, as uvicorn sets it: a port held only by connections in TIME_WAIT
    (left by a server that just stopped) is free to listen on again.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} for the {what} is in use (is another 'abplatform up' running?); "
                f"stop it or choose another port with {option}"
            ) from exc


class LocalStack:
    """Start everything on 127.0.0.1; stop it all on exit (also on Ctrl-C).

    Args:
        home: state folder (database, pipelines, certificate, logs).
        router_port / dashboard_port: fixed ports, or None for free ones.
        dashboard: also serve the Streamlit dashboard.
        config_ttl_s: the router's config refresh period (seconds).
        extra_router_env: more environment variables for the router process.
        database_url: use this database instead of DATABASE_URL / the embedded server.
        routers: how many router processes (fal runners) to start; the first listens on
            ``router_port``, the others on the ports after it (or free ones), and the
            gateway spreads ``abplatform/ab-router`` calls over all of them.
        backends: the backend apps (default: the two diffusers backends).
    """

    def __init__(
        self,
        home: Path,
        *,
        router_port: int | None = None,
        dashboard: bool = False,
        dashboard_port: int | None = None,
        config_ttl_s: float = 1.0,
        extra_router_env: dict[str, str] | None = None,
        database_url: str | None = None,
        routers: int = 1,
        backends: Mapping[str, BackendSpec] | None = None,
    ) -> None:
        if routers < 1:
            raise ValueError(f"routers must be at least 1, got {routers}")
        self.home = home.resolve()
        self.router_port = router_port or free_port()
        self.router_ports = [self.router_port] + [
            (router_port + i) if router_port else free_port() for i in range(1, routers)
        ]
        self.backends = backends
        self.dashboard_port = (dashboard_port or free_port()) if dashboard else None
        self.config_ttl_s = config_ttl_s
        self.extra_router_env = extra_router_env or {}
        self.database_url = database_url
        self._stack = ExitStack()
        self.db: Database | None = None
        self.fal: LocalFal | None = None
        self.routers: list[ServiceProcess] = []
        self.metrics_ports: list[int] = []  # each router's Prometheus /metrics port
        self.dashboard: ServiceProcess | None = None
        self.generated_password: str | None = None

    @property
    def router_url(self) -> str:
        """Base URL of the router app (``POST /``, ``POST /feedback``)."""
        return f"http://127.0.0.1:{self.router_port}"

    @property
    def router_urls(self) -> list[str]:
        """Base URL of every router process (runner)."""
        return [f"http://127.0.0.1:{port}" for port in self.router_ports]

    @property
    def router(self) -> ServiceProcess | None:
        """The first router process."""
        return self.routers[0] if self.routers else None

    @property
    def dashboard_url(self) -> str | None:
        """URL of the dashboard, if started."""
        return f"http://127.0.0.1:{self.dashboard_port}" if self.dashboard_port else None

    def service_env(self) -> dict[str, str]:
        """Environment for a process that talks to this stack's database and fal."""
        assert self.db is not None and self.fal is not None
        return {
            **os.environ,
            **self.fal.client_env(),
            "DATABASE_URL": self.db.url,
            "ABPLATFORM_HOME": str(self.home),
            "ABPLATFORM_CONFIG_TTL_S": str(self.config_ttl_s),
        }

    def __enter__(self) -> LocalStack:
        for port in self.router_ports:
            check_port_free(port, "router", "--router-port")
        if self.dashboard_port:
            check_port_free(self.dashboard_port, "dashboard", "--dashboard-port")
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            settings = Settings(home=self.home)
            url = self.database_url or resolve_url(settings)
            if not (self.database_url or settings.database_url):
                # The embedded server is this stack's: stop it on exit even if another
                # process (a CLI command) restarted it meanwhile.
                self._stack.callback(stop_embedded_postgres, self.home)
            self.db = open_database(url)
            self._stack.callback(self.db.dispose)
            self.fal = self._stack.enter_context(LocalFal(self.home, backends=self.backends))
            env = {**self.service_env(), **self.extra_router_env}
            for i, port in enumerate(self.router_ports):
                name = "router" if i == 0 else f"router-{i + 1}"
                self.metrics_ports.append(free_port())
                runner_env = {**env, "ABPLATFORM_METRICS_PORT": str(self.metrics_ports[-1])}
                self.routers.append(
                    self.fal.start_service(ROUTER_TARGET, name=name, port=port, env=runner_env)
                )
            # fal users call the router through fal too: make it reachable by app id.
            urls = self.router_urls
            self.fal.add_route(ROUTER_APP_ID, urls[0], concurrency=64, replicas=urls[1:])
            if self.dashboard_port:
                self.dashboard = self._start_dashboard()
                self._stack.callback(self.dashboard.stop)
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start_dashboard(self) -> ServiceProcess:
        env = self.service_env()
        if not env.get("ABPLATFORM_OPERATOR_PASSWORD"):
            self.generated_password = secrets.token_urlsafe(12)
            env["ABPLATFORM_OPERATOR_PASSWORD"] = self.generated_password
        assert self.dashboard_port is not None
        return start_service(
            str(DASHBOARD_APP),
            self.dashboard_port,
            env,
            name="dashboard",
            log_path=self.home / "logs" / "dashboard.log",
            command=dashboard_command(self.dashboard_port),
            health_path="/_stcore/health",
        )

    def dead_services(self) -> list[ServiceProcess]:
        """Started processes (backends, gateway, routers, dashboard) that exited and are not
        being restarted (the local supervisor restarts a dead backend or router)."""
        dead = self.fal.given_up() if self.fal else []
        if self.dashboard is not None and not self.dashboard.is_running():
            dead.append(self.dashboard)
        return dead

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()
