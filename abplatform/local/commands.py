"""The local commands of the CLI: ``up`` (serve everything), ``demo`` (the user's loop)
and ``dashboard`` (serve the dashboard alone). They start the local stand-ins, so they
live here, beside them, and the CLI's composition root registers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from abplatform.cli.common import console, err_console, fail
from abplatform.service.database import DatabaseUnavailableError

if TYPE_CHECKING:
    from abplatform.local.stack import LocalStack


def _home() -> Path:
    from abplatform.settings import get_settings

    return get_settings().home


def _database_url_set() -> bool:
    from abplatform.settings import get_settings

    return bool(get_settings().database_url)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_stack(stack: LocalStack) -> None:
    """What ``up`` started and how to reach it: router, dashboard, gateway, database."""
    assert stack.fal is not None
    console.print(
        f"[bold green]up[/]  router      {', '.join(stack.router_urls)}  (POST /, POST "
        "/feedback; any runner)"
    )
    if stack.dashboard_url:
        console.print(f"    dashboard   {stack.dashboard_url}")
        if stack.generated_password:
            console.print(
                f"    operator password (this session): {stack.generated_password}  "
                "(set ABPLATFORM_OPERATOR_PASSWORD to choose one)"
            )
    console.print(
        f"    fal gateway {stack.fal.queue_url}  (app ids: "
        + ", ".join([*stack.fal.backend_urls, "abplatform/ab-router"])
        + ")"
    )
    if _database_url_set():
        console.print("    database    DATABASE_URL (as set)")
    else:
        home = _home().resolve()
        console.print(
            f"    database    embedded PostgreSQL in {home / 'pg'}; other terminals: run "
            f"from {home.parent} or export ABPLATFORM_HOME={home}",
            highlight=False,
        )
    console.print("    environment for fal_client clients:")
    for k, v in stack.fal.client_env().items():
        if k.startswith(("FAL_", "SSL_")):
            console.print(f"      export {k}={v}", highlight=False)


def up(
    router_port: Annotated[int, typer.Option(help="Router port on 127.0.0.1.")] = 8080,
    dashboard: Annotated[bool, typer.Option(help="Also serve the dashboard.")] = True,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port.")] = 8501,
    routers: Annotated[
        int,
        typer.Option(
            min=1, max=16, help="Router processes (fal runners); ports from --router-port on."
        ),
    ] = 1,
) -> None:
    """Serve everything locally: PostgreSQL, backends, fal queue stand-in, router
    (and dashboard). Ctrl-C stops it all."""
    import signal
    import time

    from abplatform.local.stack import LocalStack, PortInUseError

    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly on SIGTERM too
    try:
        with console.status("starting PostgreSQL, backends, fal queue stand-in and router…"):
            stack = LocalStack(
                _home(),
                router_port=router_port,
                dashboard=dashboard,
                dashboard_port=dashboard_port,
                routers=routers,
            ).__enter__()
    except PortInUseError as exc:
        fail(str(exc))
        raise
    except (DatabaseUnavailableError, ValueError) as exc:
        fail(str(exc), code=3)
        raise
    try:
        _print_stack(stack)
        console.print("Ctrl-C to stop.")
        while (dead := stack.dead_services()) == []:
            time.sleep(1)
        for service_process in dead:
            err_console.print(
                f"[bold red]error:[/] {service_process.name} exited with code "
                f"{service_process.process.returncode}; stopping everything. Its log "
                f"({service_process.log_path}) ends with:\n{escape(service_process.log_tail(15))}",
                highlight=False,
            )
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        stack.__exit__(None, None, None)
        console.print("stopped")


def dashboard_cmd(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501) -> None:
    """Serve the operator dashboard on 127.0.0.1 (read-only unless
    ABPLATFORM_OPERATOR_PASSWORD, Streamlit secrets or [auth] SSO is configured)."""
    import subprocess

    from abplatform.local.stack import dashboard_command

    console.print(f"dashboard on http://127.0.0.1:{port}  (Ctrl-C to stop)")
    try:
        raise typer.Exit(subprocess.call(dashboard_command(port)))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def demo(
    requests: Annotated[
        int | None, typer.Option(help="Requests during the experiment (1000; patterns: 400).")
    ] = None,
    after_promotion: Annotated[int, typer.Option(help="Requests after promotion.")] = 100,
    units: Annotated[
        int | None, typer.Option(help="Distinct unit ids, users (300; patterns: 200).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Concurrent client requests.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
    scenario: Annotated[
        str,
        typer.Option(help="loop: the A/B loop (create, traffic, report, promote); patterns: "
                     "route by image size, a pipeline variant, cost per request."),
    ] = "loop",
    rollouts: Annotated[
        bool, typer.Option(help="Then two safe rollouts: one promoted, one rolled back.")
    ] = True,
) -> None:  # fmt: skip
    """The user's loop end to end: start the stack, create an experiment, send traffic,
    report, promote the winner, verify routing and logging; then a safe rollout of a
    healthy and of a regressed version; shut down. With ``--scenario patterns``: fal's
    routing patterns (route by input, pipeline variant, cost per request), measured."""
    from abplatform.local.demo import run_demo

    if scenario not in ("loop", "patterns"):
        fail(f"--scenario is {scenario!r}; allowed: loop, patterns")
    try:
        if scenario == "patterns":
            from abplatform.local.demo_patterns import run_patterns_demo

            run_patterns_demo(_home(), requests=requests or 400, units=units or 200,
                              concurrency=concurrency, seed=seed, console=console)  # fmt: skip
            return
        run_demo(
            _home(),
            requests=requests or 1000,
            after_promotion=after_promotion,
            units=units or 300,
            concurrency=concurrency,
            seed=seed,
            console=console,
            rollouts=rollouts,
        )
    except RuntimeError as exc:
        fail(str(exc), code=1)
