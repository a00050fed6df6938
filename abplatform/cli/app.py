"""The ``abplatform`` command line (Typer).

Commands: ``up``, ``demo``, ``dashboard``, ``experiment create|list|show|start|set-weights|
promote|stop|audit``, ``report``, ``import``, ``db upgrade|downgrade``. Every command that
needs the database applies pending migrations first. Errors print what was wrong and
what is allowed, and exit non-zero without changing anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from abplatform.service import experiments as service
from abplatform.store.connection import Database, DatabaseUnavailableError

app = typer.Typer(
    name="abplatform",
    help="A/B testing for model serving on fal: route, log, analyse, promote.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
experiment_app = typer.Typer(help="Create and manage experiments.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")
app.add_typer(db_app, name="db")

console = Console(width=None if sys.stdout.isatty() else 160)  # wide tables in logs
err_console = Console(stderr=True)
T = TypeVar("T")

ACTOR = typer.Option("--actor", help="Name recorded in the audit log.")


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def open_database(*, migrate: bool = True) -> Iterator[Database]:
    """Connect (embedded PostgreSQL unless DATABASE_URL is set) and migrate."""
    from abplatform.store import connection as database

    try:
        db = database.connect(migrate=migrate)
    except DatabaseUnavailableError as exc:
        fail(str(exc), code=3)
    except ValueError as exc:
        fail(str(exc), code=3)
    try:
        yield db
    finally:
        db.dispose()


def run_service(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a service function in a fresh session, turning service errors into exit 2."""
    with open_database() as db, db.sessions() as session:
        try:
            return fn(session, *args, **kwargs)
        except service.ServiceError as exc:
            session.rollback()
            fail(str(exc))
            raise  # unreachable


def _parse_weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"weights must be comma-separated numbers in percent (e.g. 50,50), got {text!r}")
        raise


def _parse_variant(text: str) -> service.VariantSpec:
    parts = text.split(":")
    if len(parts) == 4 and parts[3] == "control":
        key, model_version, app_id = parts[:3]
        control = True
    elif len(parts) == 3:
        key, model_version, app_id = parts
        control = False
    else:
        fail(
            f"--variant must be KEY:MODEL_VERSION:BACKEND_APP_ID[:control], got {text!r} "
            "(e.g. control:v1:abplatform/model-v1:control)"
        )
        raise AssertionError
    try:
        return service.VariantSpec(
            key=key, model_version=model_version, backend_app_id=app_id, is_control=control
        )
    except ValueError as exc:
        fail(f"invalid variant {text!r}: {_first_error(exc)}")
        raise


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        loc = ".".join(str(x) for x in e.get("loc", ()))
        return f"{loc}: {e.get('msg')}" if loc else str(e.get("msg"))
    return str(exc)


def print_experiment(view: service.ExperimentView) -> None:
    """Render one experiment as rich tables."""
    console.print(
        f"[bold]{view.name}[/]  status=[cyan]{view.status}[/]  version={view.version}  "
        f"phase={view.current_phase.number}  coverage={view.coverage:g}%  "
        f"seed={view.current_phase.hash_seed}  hash v{view.hash_version}"
        + (f"  winner=[green]{view.winner}[/]" if view.winner else "")
    )
    if view.description:
        console.print(view.description)
    table = Table("variant", "model_version", "backend app", "control", "weight %")
    for v in view.variants:
        table.add_row(
            v.key, v.model_version, v.backend_app_id, "yes" if v.is_control else "", f"{v.weight:g}"
        )
    console.print(table)
    phases = Table("phase", "weights %", "seed", "started (UTC)", "ended (UTC)", "reason")
    for p in view.phases:
        phases.add_row(
            str(p.number),
            "/".join(f"{w:g}" for w in p.weights),
            p.hash_seed,
            f"{p.started_at:%Y-%m-%d %H:%M:%S}",
            f"{p.ended_at:%Y-%m-%d %H:%M:%S}" if p.ended_at else "",
            p.reason,
        )
    console.print(phases)


# ----------------------------------------------------------------------------- experiment


@experiment_app.command("create")
def experiment_create(
    name: Annotated[str, typer.Argument(help="Unique name: lowercase letters, digits, . _ -")],
    variant: Annotated[
        list[str],
        typer.Option(
            "--variant",
            "-v",
            help="KEY:MODEL_VERSION:BACKEND_APP_ID[:control]; repeat once per variant.",
        ),
    ],
    weights: Annotated[
        str | None, typer.Option(help="Percent per variant, comma-separated (default: equal).")
    ] = None,
    coverage: Annotated[float, typer.Option(help="Percent of units enrolled.")] = 100.0,
    description: Annotated[str, typer.Option()] = "",
    primary_metric: Annotated[str, typer.Option(help="Decision metric.")] = "error_rate",
    guardrail: Annotated[
        list[str] | None, typer.Option(help="Guardrail metric; repeatable.")
    ] = None,
    seed: Annotated[str | None, typer.Option(help="Hash seed (default: random).")] = None,
    fallback: Annotated[
        bool, typer.Option(help="Fall back to control on backend failure.")
    ] = False,
    start: Annotated[bool, typer.Option(help="Start it right away.")] = False,
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Create an experiment (draft, or running with --start)."""
    try:
        spec = service.ExperimentSpec(
            name=name,
            description=description,
            variants=[_parse_variant(v) for v in variant],
            weights=_parse_weights(weights) if weights else None,
            coverage=coverage,
            primary_metric=primary_metric,
            guardrails=guardrail if guardrail is not None else list(service.DEFAULT_GUARDRAILS),
            hash_seed=seed,
            fallback_to_control=fallback,
        )
    except ValueError as exc:
        fail(f"invalid experiment: {_first_error(exc)}")
        raise
    view = run_service(service.create_experiment, spec, actor=actor)
    if start:
        view = run_service(service.start_experiment, name, actor=actor)
    print_experiment(view)


@experiment_app.command("list")
def experiment_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List experiments, newest first."""
    views = run_service(service.list_experiments)
    if as_json:
        print(json.dumps([service.as_dict(v) for v in views], default=str, indent=2))
        return
    table = Table("name", "status", "phase", "weights %", "winner", "updated (UTC)")
    for v in views:
        table.add_row(
            v.name,
            v.status,
            str(v.current_phase.number),
            "/".join(f"{x.key}={x.weight:g}" for x in v.variants),
            v.winner or "",
            f"{v.updated_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@experiment_app.command("show")
def experiment_show(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Show an experiment's variants and phases."""
    view = run_service(service.get_experiment, name)
    if as_json:
        print(json.dumps(service.as_dict(view), default=str, indent=2))
    else:
        print_experiment(view)


@experiment_app.command("start")
def experiment_start(name: str, actor: Annotated[str, ACTOR] = "cli") -> None:
    """Start a draft experiment: the router begins serving it."""
    print_experiment(run_service(service.start_experiment, name, actor=actor))


@experiment_app.command("set-weights")
def experiment_set_weights(
    name: str,
    weights: Annotated[str, typer.Argument(help="Percent per variant, e.g. 20,80.")],
    rerandomize: Annotated[
        bool, typer.Option(help="New hash seed instead of sticky minimal movement.")
    ] = False,
    coverage: Annotated[float | None, typer.Option(help="New coverage, percent.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Change split weights: starts a new phase (sticky by default)."""
    mode = "rerandomize" if rerandomize else "sticky"
    w = _parse_weights(weights)
    preview = run_service(service.preview_weight_change, name, w, mode)
    console.print(
        f"{mode}: {'/'.join(f'{x:g}' for x in preview.old_weights)} → "
        f"{'/'.join(f'{x:g}' for x in preview.new_weights)}; "
        f"{preview.moved_fraction:.1%} of units would change variant"
    )
    if not yes and sys.stdin.isatty():
        typer.confirm("Apply?", abort=True)
    print_experiment(
        run_service(service.set_weights, name, w, actor=actor, mode=mode, coverage=coverage)
    )


@experiment_app.command("promote")
def experiment_promote(
    name: str,
    variant: Annotated[str, typer.Argument(help="Winning variant key.")],
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Promote a winner: 100% of traffic, experiment concluded."""
    print_experiment(run_service(service.promote, name, variant, actor=actor))


@experiment_app.command("stop")
def experiment_stop(name: str, actor: Annotated[str, ACTOR] = "cli") -> None:
    """Stop an experiment for good: the router answers 409 for it from then on. To end a
    test and keep serving, promote a variant instead (promoting the control rolls back)."""
    print_experiment(run_service(service.stop_experiment, name, actor=actor))


@experiment_app.command("audit")
def experiment_audit(name: str) -> None:
    """Show an experiment's audit log."""
    entries = run_service(service.audit_log, name)
    table = Table("at (UTC)", "actor", "action", "before", "after")
    for e in entries:
        table.add_row(
            f"{e['at']:%Y-%m-%d %H:%M:%S}",
            e["actor"],
            e["action"],
            json.dumps(e["before"], default=str)[:60] if e["before"] else "",
            json.dumps(e["after"], default=str)[:60] if e["after"] else "",
        )
    console.print(table)


# ----------------------------------------------------------------------------- stack


def _home() -> Path:
    from abplatform.settings import get_settings

    return get_settings().home


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command("up")
def up(
    router_port: Annotated[int, typer.Option(help="Router port on 127.0.0.1.")] = 8080,
    dashboard: Annotated[bool, typer.Option(help="Also serve the dashboard.")] = True,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port.")] = 8501,
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
                _home(), router_port=router_port, dashboard=dashboard, dashboard_port=dashboard_port
            ).__enter__()
    except PortInUseError as exc:
        fail(str(exc))
        raise
    except (DatabaseUnavailableError, ValueError) as exc:
        fail(str(exc), code=3)
        raise
    try:
        assert stack.fal is not None
        console.print(
            f"[bold green]up[/]  router      {stack.router_url}  (POST /, POST /feedback)"
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
        console.print("    environment for fal_client clients:")
        for k, v in stack.fal.client_env().items():
            if k.startswith(("FAL_", "SSL_")):
                console.print(f"      export {k}={v}", highlight=False)
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


@app.command("dashboard")
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


@app.command("demo")
def demo(
    requests: Annotated[int, typer.Option(help="Requests during the experiment.")] = 1000,
    after_promotion: Annotated[int, typer.Option(help="Requests after promotion.")] = 100,
    units: Annotated[int, typer.Option(help="Distinct unit ids (users).")] = 300,
    concurrency: Annotated[int, typer.Option(help="Concurrent client requests.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
) -> None:
    """The user's loop end to end: start the stack, create an experiment, send traffic,
    report, promote the winner, verify routing and logging, shut down."""
    from abplatform.local.demo import run_demo

    try:
        run_demo(
            _home(),
            requests=requests,
            after_promotion=after_promotion,
            units=units,
            concurrency=concurrency,
            seed=seed,
            console=console,
        )
    except RuntimeError as exc:
        fail(str(exc), code=1)


# ----------------------------------------------------------------------------- report


@app.command("report")
def report_cmd(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    phase: Annotated[int | None, typer.Option(help="Phase number (default: current).")] = None,
    fixed_horizon: Annotated[
        bool, typer.Option(help="Welch t-test instead of the always-valid sequential test.")
    ] = False,
    alpha: Annotated[float, typer.Option(help="Significance level (fraction).")] = 0.05,
    correction: Annotated[str, typer.Option(help="holm, bh or none.")] = "holm",
    include_multi_exposure: Annotated[
        bool, typer.Option(help="Keep units assigned to more than one variant.")
    ] = False,
) -> None:
    """Print the stats report of an experiment."""
    from abplatform.cli.render import render
    from abplatform.service.reports import build_report

    report = run_service(
        build_report,
        name,
        phase=phase,
        method="fixed" if fixed_horizon else "sequential",
        alpha=alpha,
        correction=correction,  # type: ignore[arg-type]
        include_multi_exposure=include_multi_exposure,
    )
    if as_json:
        print(report.to_json())
    else:
        render(report, console)


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="CSV file, one row per unit.", exists=True)],
    experiment: Annotated[str, typer.Option(help="Name of the new (concluded) experiment.")],
    unit: Annotated[str, typer.Option(help="Unit id column.")],
    variant: Annotated[str, typer.Option(help="Variant column.")],
    control: Annotated[str, typer.Option(help="Value of the variant column for control.")],
    metric: Annotated[list[str], typer.Option(help="Metric column; repeatable; first = primary.")],
    treatment: Annotated[
        list[str] | None, typer.Option(help="Allowed treatment value; repeatable (default: all).")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Intended split in percent, control first (default: equal).")
    ] = None,
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Import historical per-unit results so the same report runs on them."""
    from abplatform.service.imports import import_csv

    result = run_service(
        import_csv,
        file,
        experiment=experiment,
        unit_col=unit,
        variant_col=variant,
        control=control,
        metrics=metric,
        treatments=treatment,
        weights=_parse_weights(weights) if weights else None,
        actor=actor,
    )
    console.print(
        f"imported {result.units_imported:,} units into [bold]{experiment}[/] "
        f"({', '.join(f'{k}: {v:,}' for k, v in result.units_by_variant.items())}) "
        f"from {result.rows_read:,} rows"
    )
    if result.bad_rows:
        table = Table("rejected rows: reason", "rows", "examples (data row numbers)")
        for reason, count in result.bad_rows.most_common():
            table.add_row(reason, f"{count:,}", ", ".join(map(str, result.examples[reason])))
        console.print(table)
    else:
        console.print("no rows rejected")


@app.command("power")
def power_cmd(
    proportion: Annotated[
        float | None, typer.Option(help="Baseline rate of a binary metric (fraction).")
    ] = None,
    mean: Annotated[float | None, typer.Option(help="Baseline mean of a metric.")] = None,
    sd: Annotated[
        float | None, typer.Option(help="Per-unit standard deviation (with --mean).")
    ] = None,
    mde: Annotated[
        float | None, typer.Option(help="Minimum detectable effect (fraction if --relative).")
    ] = None,
    n: Annotated[int | None, typer.Option(help="Units per variant: print the MDE instead.")] = None,
    relative: Annotated[bool, typer.Option(help="MDE relative to the baseline.")] = True,
    alpha: Annotated[float, typer.Option(help="Significance level (fraction).")] = 0.05,
    power: Annotated[float, typer.Option(help="Power (fraction).")] = 0.8,
    variants: Annotated[int, typer.Option(help="Number of variants, control included.")] = 2,
) -> None:
    """Sample size per variant for an MDE, or the MDE for a sample size (fixed horizon)."""
    from abplatform.core.stats import Baseline, minimum_detectable_effect, sample_size_per_variant

    try:
        if proportion is not None:
            baseline = Baseline.for_proportion(proportion)
        elif mean is not None and sd is not None:
            baseline = Baseline.for_mean(mean, sd)
        else:
            fail("give --proportion P, or --mean M with --sd S")
            return
        kind = "relative" if relative else "absolute"
        if n is not None:
            effect = minimum_detectable_effect(
                baseline, n, difference=kind, alpha=alpha, power=power, n_variants=variants
            )
            shown = f"{effect:.2%}" if relative else f"{effect:.4g}"
            console.print(f"MDE with {n:,} units per variant: {shown} ({kind})")
        elif mde is not None:
            size = sample_size_per_variant(
                baseline, mde, difference=kind, alpha=alpha, power=power, n_variants=variants
            )
            console.print(f"units per variant to detect {mde:g} ({kind}): {size:,}")
        else:
            fail("give --mde (for a sample size) or --n (for the MDE)")
    except ValueError as exc:
        fail(str(exc))


# ----------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from abplatform.store import connection as database

    with open_database(migrate=False) as db:
        database.upgrade(db.url, revision)
    console.print(f"database at revision {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. base or -1.")]) -> None:
    """Revert migrations down to REVISION."""
    from abplatform.store import connection as database

    with open_database(migrate=False) as db:
        database.downgrade(db.url, revision)
    console.print(f"database at revision {revision}")


def main() -> None:
    """Entry point for ``python -m abplatform``."""
    app()


if __name__ == "__main__":
    main()
