"""``abplatform experiment ...``: create, list, show, start, set-weights, promote, stop,
audit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from abplatform import service
from abplatform.cli.common import ACTOR, console, fail, first_error, parse_weights, run_service

#: Optional flags after KEY:MODEL_VERSION:BACKEND_APP_ID: the control, and the call mode
#: ("run": one direct call, the default; "queue": fal's queue, for long jobs).
VARIANT_FLAGS = ("control", "queue", "run")

experiment_app = typer.Typer(help="Create and manage experiments.", no_args_is_help=True)


def _parse_variant(text: str) -> service.VariantSpec:
    parts = text.split(":")
    flags = parts[3:]
    if (
        len(parts) < 3
        or any(f not in VARIANT_FLAGS for f in flags)
        or len(set(flags)) < len(flags)
        or {"run", "queue"} <= set(flags)
    ):
        fail(
            f"--variant must be KEY:MODEL_VERSION:BACKEND_APP_ID[:control][:queue|:run], got "
            f"{text!r} (e.g. control:v1:abplatform/model-v1:control)"
        )
        raise AssertionError
    key, model_version, app_id = parts[:3]
    try:
        return service.VariantSpec(
            key=key,
            model_version=model_version,
            backend_app_id=app_id,
            is_control="control" in flags,
            call_mode="queue" if "queue" in flags else "run",
        )
    except ValueError as exc:
        fail(f"invalid variant {text!r}: {first_error(exc)}")
        raise


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
    if view.namespace_text:
        console.print(f"namespace {view.namespace_text} (mutually exclusive with its neighbours)")
    table = Table("variant", "model_version", "backend app", "control", "weight %")
    for v in view.variants:
        table.add_row(
            v.key, v.model_version, v.backend_app_id, "yes" if v.is_control else "", f"{v.weight:g}"
        )
    console.print(table)
    for v in view.variants:
        if v.calls_text != v.backend_app_id:
            console.print(f"{v.key} serves by {v.calls_text}", soft_wrap=True, highlight=False)
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


StepOpt = Annotated[
    list[str] | None,
    typer.Option(help="KEY=APP[,ARG=PATH][,ARG:=JSON]: one more app call of variant KEY, fed "
                 "by the previous output (a pipeline); repeatable, in order."),
]  # fmt: skip
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="KEY.ARG=JSON: a constant over the caller's arguments."),
]
HintOpt = Annotated[
    list[str] | None,
    typer.Option(help="KEY=TEMPLATE: fal runner hint of variant KEY, e.g. treatment={lora}."),
]
ShadowOpt = Annotated[
    list[str] | None,
    typer.Option(help="KEY=APP@PERCENT: mirror that share of KEY's requests to APP."),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(help="NAME:START-END: a slice (percent of units) of a namespace; experiments "
                 "with disjoint slices of one namespace are mutually exclusive."),
]  # fmt: skip
FileOpt = Annotated[
    Path | None,
    typer.Option("--from-file", help="The whole experiment as JSON (the service's "
                 "ExperimentSpec); the other options are then ignored, but the name."),
]  # fmt: skip


def _spec_from_file(path: Path, name: str) -> service.ExperimentSpec:
    try:
        data = json.loads(path.read_text())
        return service.ExperimentSpec.model_validate({**data, "name": name})
    except OSError as exc:
        fail(f"cannot read {path}: {exc}")
        raise
    except ValueError as exc:
        fail(f"invalid experiment in {path}: {first_error(exc)}")
        raise


def _build_spec(
    name: str, variant: list[str], patterns: dict[str, list[str]], namespace: str | None,
    **fields: object,
) -> service.ExperimentSpec:  # fmt: skip
    from abplatform.cli.options import apply_variant_options, parse_namespace

    if not variant:
        fail("give the variants with --variant (one per variant), or --from-file FILE")
    try:
        variants = apply_variant_options([_parse_variant(v) for v in variant], **patterns)
        return service.ExperimentSpec(
            name=name, variants=variants,
            namespace=parse_namespace(namespace) if namespace else None, **fields,  # type: ignore[arg-type]
        )  # fmt: skip
    except ValueError as exc:
        fail(f"invalid experiment: {first_error(exc)}")
        raise


@experiment_app.command("create")
def experiment_create(
    name: Annotated[str, typer.Argument(help="Unique name: lowercase letters, digits, . _ -")],
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            "-v",
            help="KEY:MODEL_VERSION:BACKEND_APP_ID[:control][:queue]; repeat once per variant "
            "(:queue calls the backend through fal's queue, for long jobs; default: direct).",
        ),
    ] = None,
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
    step: StepOpt = None,
    set_: SetOpt = None,
    hint: HintOpt = None,
    shadow: ShadowOpt = None,
    namespace: NamespaceOpt = None,
    from_file: FileOpt = None,
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Create an experiment (draft, or running with --start)."""
    if from_file is not None:
        spec = _spec_from_file(from_file, name)
    else:
        patterns = {"steps": step or [], "sets": set_ or [], "hints": hint or [],
                    "shadows": shadow or []}  # fmt: skip
        weights_list = parse_weights(weights) if weights else None
        spec = _build_spec(
            name, variant or [], patterns, namespace, description=description,
            weights=weights_list, coverage=coverage, primary_metric=primary_metric,
            guardrails=guardrail if guardrail is not None else list(service.DEFAULT_GUARDRAILS),
            hash_seed=seed, fallback_to_control=fallback,
        )  # fmt: skip
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


@experiment_app.command(
    "set-weights",
    # A negative weight ("-1,101") is a value to refuse with a reason, not an unknown option.
    context_settings={"ignore_unknown_options": True},
)
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
    w = parse_weights(weights)
    # The preview applies every rule of the change itself: nothing is previewed that
    # would then be refused.
    preview = run_service(service.preview_weight_change, name, w, mode, coverage)
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


def _changes(before: dict | None, after: dict | None) -> str:
    """What an audit entry changed, one ``key: old → new`` line per field, in full."""
    if not after:
        return ""
    if not before:
        return "\n".join(f"{k}: {json.dumps(v, default=str)}" for k, v in after.items())
    keys = [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    return "\n".join(
        f"{k}: {json.dumps(before.get(k), default=str)} → {json.dumps(after.get(k), default=str)}"
        for k in keys
    )


@experiment_app.command("audit")
def experiment_audit(
    name: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every entry in full as JSON.")
    ] = False,
) -> None:
    """Show an experiment's audit log: who changed what, when (every changed field)."""
    entries = run_service(service.audit_log, name)
    if as_json:
        print(json.dumps(entries, default=str, indent=2))
        return
    table = Table("at (UTC)", "actor", "action", "changes (before → after)")
    for e in entries:
        table.add_row(
            f"{e['at']:%Y-%m-%d %H:%M:%S}",
            e["actor"],
            e["action"],
            Text(_changes(e["before"], e["after"])),
        )
    console.print(table)
