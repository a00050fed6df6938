"""The ``abplatform`` command line (Typer): the composition root of the CLI.

Commands: ``up``, ``demo``, ``dashboard``, ``experiment create|list|show|start|set-weights|
promote|stop|audit``, ``route create|update|list|show|audit``, ``rollout create|list|show|
pause|resume|override``, ``controller``, ``report``, ``prices``, ``import``, ``power``,
``db upgrade|downgrade``. Every
command that needs the database applies pending migrations first. Errors print what was
wrong and what is allowed, and exit non-zero without changing anything.
"""

from __future__ import annotations

import typer

from abplatform.cli.admin import db_app
from abplatform.cli.experiments import experiment_app
from abplatform.cli.reports import import_cmd, power_cmd, report_cmd
from abplatform.cli.rollouts import controller_cmd, rollout_app
from abplatform.cli.routes import prices_cmd, route_app
from abplatform.local.commands import dashboard_cmd, demo, up

app = typer.Typer(
    name="abplatform",
    help="A/B testing for model serving on fal: route, log, analyse, promote.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(experiment_app, name="experiment")
app.add_typer(route_app, name="route")
app.add_typer(db_app, name="db")
app.add_typer(rollout_app, name="rollout")
app.command("controller")(controller_cmd)
app.command("up")(up)
app.command("dashboard")(dashboard_cmd)
app.command("demo")(demo)
app.command("report")(report_cmd)
app.command("import")(import_cmd)
app.command("power")(power_cmd)
app.command("prices")(prices_cmd)


def main() -> None:
    """Entry point for ``python -m abplatform.cli``."""
    app()


if __name__ == "__main__":
    main()
