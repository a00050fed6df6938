"""``abplatform route ...`` (create, update, list, show, audit) and ``abplatform prices``.

A route is given by ``--arg`` and ``--rule`` options (see :mod:`abplatform.cli.options`)
or as JSON with ``--from-file`` (the service's ``RouteSpec``). It is validated whole
before anything is saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from abplatform import service
from abplatform.cli.common import ACTOR, console, fail, first_error, run_service
from abplatform.cli.render import route_table

route_app = typer.Typer(help="Route requests by their arguments (routing rules).",
                        no_args_is_help=True)  # fmt: skip

ArgOpt = Annotated[
    list[str] | None,
    typer.Option("--arg", help="NAME:TYPE[=DEFAULT], an argument the rules read (TYPE: "
                 "number, string, boolean); repeatable."),
]  # fmt: skip
RuleOpt = Annotated[
    list[str] | None,
    typer.Option("--rule", help="'NAME: CONDITION -> app:APP | experiment:NAME...' "
                 "[hint:TEMPLATE] [version:LABEL] [queue]; in order; CONDITION 'else' "
                 "matches the rest. Repeatable."),
]  # fmt: skip
FileOpt = Annotated[
    Path | None, typer.Option("--from-file", help="The whole route as JSON (RouteSpec).")
]


def _spec(
    name: str, args: list[str], rules: list[str], description: str, from_file: Path | None
) -> service.RouteSpec:
    from abplatform.cli.options import parse_argument, parse_rule

    try:
        if from_file is not None:
            data = json.loads(from_file.read_text())
            return service.RouteSpec.model_validate({**data, "name": name})
        if not rules:
            fail("give the rules with --rule (in order), or --from-file FILE")
        return service.RouteSpec(
            name=name, description=description, arguments=dict(parse_argument(a) for a in args),
            rules=[parse_rule(r) for r in rules],
        )  # fmt: skip
    except OSError as exc:
        fail(f"cannot read {from_file}: {exc}")
        raise
    except ValueError as exc:
        fail(f"invalid route: {first_error(exc)}")
        raise


def print_route(view: service.RouteView) -> None:
    """The route's arguments and rules as a table."""
    console.print(f"[bold]{view.name}[/]  version={view.version}  {view.description}")
    if view.arguments:
        console.print(
            "arguments: "
            + ", ".join(
                f"{n}: {a['type']}" + (f" = {a['default']}" if a.get("default") is not None else "")
                for n, a in view.arguments.items()
            )
        )
    table = Table("#", "rule", "when", "target", title="Rules (first match wins)",
                  title_justify="left")  # fmt: skip
    for i, r in enumerate(view.rules, 1):
        table.add_row(str(i), r["name"], r["when"] or "else", service.RuleSpec(**r).target_text)
    console.print(table)


@route_app.command("create")
def route_create(
    name: Annotated[str, typer.Argument(help="Unique name: lowercase letters, digits, . _ -")],
    arg: ArgOpt = None,
    rule: RuleOpt = None,
    description: Annotated[str, typer.Option()] = "",
    from_file: FileOpt = None,
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Create a route: POST / with {"route": NAME, ...} then follows its rules."""
    spec = _spec(name, arg or [], rule or [], description, from_file)
    print_route(run_service(service.create_route, spec, actor=actor))


@route_app.command("update")
def route_update(
    name: str,
    arg: ArgOpt = None,
    rule: RuleOpt = None,
    description: Annotated[str, typer.Option()] = "",
    from_file: FileOpt = None,
    version: Annotated[
        int | None, typer.Option(help="Refuse if the route is no longer at this version.")
    ] = None,
    actor: Annotated[str, ACTOR] = "cli",
) -> None:
    """Replace a route's arguments and rules (every router has it within milliseconds)."""
    spec = _spec(name, arg or [], rule or [], description, from_file)
    print_route(run_service(service.update_route, spec, actor=actor, expected_version=version))


@route_app.command("list")
def route_list() -> None:
    """List routes."""
    table = Table("name", "version", "rules", "updated (UTC)")
    for v in run_service(service.list_routes):
        rules = "; ".join(f"{r['name']}: {r['when'] or 'else'}" for r in v.rules)
        table.add_row(v.name, str(v.version), rules, f"{v.updated_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


@route_app.command("show")
def route_show(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """A route's rules and what its traffic did per rule: requests, errors, latency, billed
    seconds and cost per request."""
    report = run_service(service.route_report, name)
    if as_json:
        print(report.to_json())
        return
    print_route(run_service(service.get_route, name))
    console.print(route_table(report.rules, f"Traffic of route {name} (all time)"))


@route_app.command("audit")
def route_audit(name: str) -> None:
    """Who created and changed the route, when."""
    table = Table("at (UTC)", "actor", "action", "version")
    for e in run_service(service.route_audit, name):
        table.add_row(f"{e['at']:%Y-%m-%d %H:%M:%S}", e["actor"], e["action"],
                      str(e["after"].get("version", "")))  # fmt: skip
    console.print(table)


def prices_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The price table: machine type and price of each backend app (what a request costs)."""
    try:
        rows = service.price_rows()
    except service.InvalidInputError as exc:
        fail(str(exc))
        raise
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("app", "machine", "USD / hour", "USD / second", "source")
    for r in rows:
        hour, second = r["usd_per_hour"], r["usd_per_second"]
        table.add_row(r["app"], r["machine"] or "–", "–" if hour is None else f"{hour:.2f}",
                      "–" if second is None else f"{second:.6f}", r["source"])  # fmt: skip
    console.print(table)


__all__ = ["prices_cmd", "print_route", "route_app"]
