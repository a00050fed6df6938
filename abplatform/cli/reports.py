"""``abplatform report``, ``import`` and ``power``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from abplatform.cli.common import ACTOR, console, fail, parse_weights, run_service


def report_cmd(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    phase: Annotated[int | None, typer.Option(help="Phase number (default: current).")] = None,
    all_phases: Annotated[
        bool,
        typer.Option(
            "--all-phases",
            help="Pool every phase with a comparison, each phase a stratum with its own "
            "weights (after weight changes).",
        ),
    ] = False,
    fixed_horizon: Annotated[
        bool | None,
        typer.Option(
            "--fixed-horizon/--sequential",
            help="Welch t-test for a horizon fixed in advance, or the always-valid "
            "sequential test (default: sequential for live experiments, fixed horizon for "
            "imported ones).",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="frequentist (p-values, CIs) or bayesian (chance to win).")
    ] = "frequentist",
    alpha: Annotated[float, typer.Option(help="Significance level (fraction).")] = 0.05,
    correction: Annotated[str, typer.Option(help="holm, bh or none.")] = "holm",
    include_multi_exposure: Annotated[
        bool, typer.Option(help="Keep units assigned to more than one variant in a phase.")
    ] = False,
) -> None:
    """Print the stats report of an experiment."""
    from abplatform.cli.render import render
    from abplatform.service.reports import build_report, previous_report

    settings = dict(
        method=None if fixed_horizon is None else ("fixed" if fixed_horizon else "sequential"),
        alpha=alpha,
        correction=correction,
        include_multi_exposure=include_multi_exposure,
        engine=engine,
    )
    report = run_service(build_report, name, phase=phase, all_phases=all_phases, **settings)
    if as_json:
        print(report.to_json())
        return
    previous = run_service(previous_report, name, report, **settings)
    render(report, console, previous)


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
        weights=parse_weights(weights) if weights else None,
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
    method: Annotated[
        str,
        typer.Option(
            help="sequential (the always-valid test live reports run) or fixed (one look at "
            "a horizon fixed in advance)."
        ),
    ] = "sequential",
    split_alpha: Annotated[
        bool,
        typer.Option(
            help="Split alpha over the treatments (Bonferroni). Default: not split, "
            "GrowthBook's convention."
        ),
    ] = False,
) -> None:
    """Sample size per variant for an MDE, or the MDE for a sample size, for the test the
    report runs (sequential by default; GrowthBook's power.ts conventions)."""
    from abplatform.core.stats import Baseline

    if method not in ("sequential", "fixed"):
        fail(f"--method is {method!r}; allowed: sequential, fixed")
    if n is None and mde is None:
        fail("give --mde (for a sample size) or --n (for the MDE)")
    try:
        if proportion is not None:
            baseline = Baseline.for_proportion(proportion)
        elif mean is not None and sd is not None:
            baseline = Baseline.for_mean(mean, sd)
        else:
            fail("give --proportion P, or --mean M with --sd S")
            return
        common = dict(
            difference="relative" if relative else "absolute", alpha=alpha, power=power,
            n_variants=variants, split_alpha=split_alpha,
        )  # fmt: skip
        console.print(_plan_line(baseline, method, mde, n, common), highlight=False)
    except ValueError as exc:
        fail(str(exc))
        return
    console.print(
        f"power {power:g}, two-sided, {_level_text(alpha, variants, split_alpha)}",
        highlight=False,
    )


def _plan_line(baseline: Any, method: str, mde: float | None, n: int | None, common: dict) -> str:
    """The sample size for ``mde`` (or the MDE for ``n`` units per variant) under
    ``method``, with the other method's figure beside it."""
    from abplatform.core.stats import minimum_detectable_effect, sample_size_per_variant

    other = "fixed" if method == "sequential" else "sequential"
    kind = common["difference"]
    if n is not None:
        effects = [
            minimum_detectable_effect(baseline, n, method=m, **common) for m in (method, other)
        ]
        shown = [f"{e:.2%}" if kind == "relative" else f"{e:.4g}" for e in effects]
        return (
            f"MDE with {n:,} units per variant, {method} test: {shown[0]} ({kind}; "
            f"the {other} test: {shown[1]})"
        )
    assert mde is not None
    sizes = [sample_size_per_variant(baseline, mde, method=m, **common) for m in (method, other)]
    return (
        f"units per variant to detect {mde:g} ({kind}) with the {method} test: {sizes[0]:,} "
        f"(the {other} test: {sizes[1]:,})"
    )


def _level_text(alpha: float, variants: int, split_alpha: bool) -> str:
    treatments = variants - 1
    if split_alpha and treatments > 1:
        return (
            f"α {alpha:g} split over {treatments} treatments (Bonferroni: "
            f"{alpha / treatments:.4g} each)"
        )
    return (
        f"α {alpha:g} per comparison, not split across treatments (GrowthBook's convention; "
        "--split-alpha for Bonferroni)"
    )
