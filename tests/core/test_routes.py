"""Routes in the pure core: validation when saved, the first matching rule at run time,
layers of mutually exclusive experiments (GrowthBook namespaces), runner hints and the
price table."""

from __future__ import annotations

import math

import pytest

from abplatform.core import assignment
from abplatform.core.costs import PUBLIC_PRICES_PER_HOUR, PriceTable, reported_seconds
from abplatform.core.errors import InvalidInputError
from abplatform.core.expressions import EvaluationError
from abplatform.core.routes import (
    ExperimentInfo,
    NoRuleMatchedError,
    RouteSpec,
    compile_route,
    validate_route,
)
from abplatform.core.routing import (
    RouteReason,
    RoutingConfig,
    RoutingVariant,
    decide_route,
    hint_fields,
    pick_experiment,
    render_hint,
)

APPS = ("abplatform/model-v1", "abplatform/model-v2")
INFOS = {
    "big": ExperimentInfo("big", "running", None),
    "left": ExperimentInfo("left", "running", ("images", 0.0, 0.5)),
    "right": ExperimentInfo("right", "running", ("images", 0.5, 1.0)),
    "wide": ExperimentInfo("wide", "running", ("images", 0.3, 1.0)),
    "other": ExperimentInfo("other", "running", ("videos", 0.5, 1.0)),
    "old": ExperimentInfo("old", "stopped", None),
}


def spec(*rules: dict, arguments: dict | None = None) -> RouteSpec:
    args = {"width": {"type": "number", "default": 512}, "height": {"type": "number",
            "default": 512}} if arguments is None else arguments  # fmt: skip
    return RouteSpec(name="images", arguments=args, rules=list(rules))


BY_SIZE = spec(
    {"name": "small", "when": "width * height <= 1048576", "app": APPS[0]},
    {"name": "large", "experiments": ["big"]},
)


def test_a_valid_route_validates_and_matches_its_first_true_rule() -> None:
    assert validate_route(BY_SIZE, APPS, INFOS) is BY_SIZE
    route = compile_route(7, 1, BY_SIZE)
    assert route.match({"width": 1024, "height": 1024}).name == "small"
    assert route.match({"width": 2048, "height": 1024}).name == "large"
    assert route.match({}).name == "small"  # declared defaults
    small = route.match({}).app
    assert small is not None and small.backend_app_id == APPS[0] and small.key == "small"
    assert small.model_version == "model-v1"  # the app's alias unless given


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (spec({"name": "a", "when": "widht > 1", "app": APPS[0]}), "unknown argument 'widht'"),
        (spec({"name": "a", "when": "width >", "app": APPS[0]}), "is not valid"),
        (spec({"name": "a", "app": "abplatform/nope"}), "unknown backend app id 'abplatform/nope'"),
        (spec({"name": "a", "experiments": ["nope"]}), "unknown experiment 'nope'"),
        (spec({"name": "a", "experiments": ["old"]}), "which is stopped"),
        (spec({"name": "a"}), "needs a target"),
        (spec({"name": "a", "app": APPS[0]}, {"name": "b", "app": APPS[1]}),
         "rule 'a' has no condition, so it matches every request and the rules after it (b)"),
        (spec({"name": "a", "when": "true", "app": APPS[0]},
              {"name": "a", "app": APPS[1]}), "rule names must be unique; repeated: a"),
        (spec({"name": "a", "experiments": ["big", "left"]}), "must share one namespace"),
        (spec({"name": "a", "experiments": ["left", "other"]}), "must share one namespace"),
        (spec({"name": "a", "experiments": ["left", "wide"]}),
         "the namespace slices of left and wide overlap"),
        (spec({"name": "a", "app": APPS[0], "runner_hint": "{lora}"}),
         "runner hint reads undeclared argument 'lora'"),
        (spec({"name": "a", "app": APPS[0]}, arguments={"w-x": {"type": "number"}}),
         "argument name 'w-x' is invalid"),
        (spec({"name": "a", "app": APPS[0]}, arguments={"w": {"type": "number",
              "default": "big"}}), "default of argument 'w' must be a number"),
        (RouteSpec(name="images", rules=[]), "a route needs 1-50 rules, got 0"),
    ],
)  # fmt: skip
def test_a_bad_route_is_refused_with_the_reason(route: RouteSpec, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_route(route, APPS, INFOS)
    assert message in str(info.value)


def test_a_rule_name_must_be_a_key() -> None:
    with pytest.raises(ValueError, match="rule name 'Small!' is invalid"):
        spec({"name": "Small!", "app": APPS[0]})


def test_no_matching_rule_and_bad_arguments_are_the_callers_errors() -> None:
    route = compile_route(1, 1, spec({"name": "small", "when": "width < 100", "app": APPS[0]}))
    with pytest.raises(NoRuleMatchedError, match="no rule of route 'images' matches"):
        route.match({"width": 500})
    with pytest.raises(EvaluationError, match="route 'images', rule 'small': argument 'width'"):
        route.match({"width": "wide"})


def config(name: str, namespace: tuple[str, float, float] | None) -> RoutingConfig:
    variants = (
        RoutingVariant(1, "control", "v1", APPS[0], True),
        RoutingVariant(2, "treatment", "v2", APPS[1], False),
    )
    return RoutingConfig(
        experiment_id=1, name=name, status="running", version=1, phase_id=1, hash_seed=name,
        hash_version=2, coverage=1.0, allocation=assignment.fresh_allocation([0.5, 0.5]),
        variants=variants, winner_index=None, fallback_to_control=False, namespace=namespace,
    )  # fmt: skip


def test_experiments_sharing_a_namespace_are_mutually_exclusive() -> None:
    left = config("left", ("images", 0.0, 0.5))
    right = config("right", ("images", 0.5, 1.0))
    units = [f"user-{i}" for i in range(4000)]
    picked = [pick_experiment([left, right], u) for u in units]
    assert all(p is not None for p in picked)  # the slices cover the namespace
    share_left = sum(p is left for p in picked) / len(units)
    assert abs(share_left - 0.5) < 0.03
    for unit, p in zip(units, picked, strict=True):
        in_left = assignment.in_namespace(unit, ("images", 0.0, 0.5))
        in_right = assignment.in_namespace(unit, ("images", 0.5, 1.0))
        assert in_left != in_right and (p is left) == in_left
        # Addressed directly, each experiment enrols only the units of its slice.
        assert decide_route(left, unit).in_experiment == in_left
        assert decide_route(right, unit).reason != RouteReason.OUTSIDE_NAMESPACE or not in_right
    # The namespace hash is independent of each experiment's own assignment hash.
    inside = [u for u in units if assignment.in_namespace(u, ("images", 0.0, 0.5))]
    keys = [decide_route(left, u).target.key for u in inside]
    assert abs(keys.count("treatment") / len(keys) - 0.5) < 0.05


def test_a_unit_outside_every_slice_is_in_no_experiment() -> None:
    half = config("half", ("images", 0.0, 0.5))
    outside = next(
        f"u{i}" for i in range(100) if not assignment.in_namespace(f"u{i}", ("images", 0, 0.5))
    )
    assert pick_experiment([half], outside) is None
    decision = decide_route(half, outside)
    assert decision.reason == RouteReason.OUTSIDE_NAMESPACE and not decision.in_experiment
    assert decision.target.is_control


@pytest.mark.parametrize(
    ("template", "arguments", "expected"),
    [
        ("{lora}", {"lora": "anime-v2"}, "anime-v2"),
        ("lora-{lora}-{rank}", {"lora": "ink", "rank": 8}, "lora-ink-8"),
        ("static-hint", {}, "static-hint"),
        ("{lora}", {}, None),
        ("{lora}", {"lora": {"nested": 1}}, None),
        ("{lora}", {"lora": "a\r\nX-Evil: 1"}, "aX-Evil: 1"),
        ("{lora}", {"lora": "日本"}, None),
    ],
)
def test_runner_hints_render_from_the_request_arguments(
    template: str, arguments: dict, expected: str | None
) -> None:
    assert render_hint(template, arguments) == expected


@pytest.mark.parametrize("template", ["{lora!r}", "{lora:>10}", "{0}", "{a.b}", "{", ""])
def test_bad_runner_hint_templates_are_refused(template: str) -> None:
    with pytest.raises(InvalidInputError, match="runner hint"):
        hint_fields(template)


def test_prices_default_to_fals_public_list_and_settings_override_them() -> None:
    table = PriceTable.from_settings()
    assert table.machine("abplatform/model-v2") == "GPU-H100"
    assert math.isclose(table.price_per_s("abplatform/model-v2"), 1.89 / 3600)
    assert math.isclose(table.cost("abplatform/model-v1", 2.0), 2 * 0.99 / 3600)
    assert table.cost("abplatform/echo", 1.0) is None  # no machine type, no price
    assert set(PUBLIC_PRICES_PER_HOUR) == {"GPU-A100", "GPU-H100", "GPU-H200"}
    mine = PriceTable.from_settings("abplatform/echo=M", "M=0.36,GPU-H100=$2.5/h")
    assert math.isclose(mine.cost("abplatform/echo", 10.0), 0.001)
    assert math.isclose(mine.price_per_s("abplatform/model-v2"), 2.5 / 3600)
    rows = {r["app"]: r for r in mine.rows(["abplatform/echo", "abplatform/model-v1"])}
    assert rows["abplatform/echo"]["source"] == "setting ABPLATFORM_PRICES_PER_HOUR"
    assert rows["abplatform/model-v1"]["source"].startswith("fal public list price")


@pytest.mark.parametrize(
    ("machines", "prices", "message"),
    [("a", "", "expected NAME=VALUE pairs"), ("", "GPU-A100=-1", "a number ≥ 0"),
     ("", "GPU-A100=cheap", "give USD per hour")],
)  # fmt: skip
def test_a_malformed_price_setting_is_refused(machines: str, prices: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        PriceTable.from_settings(machines, prices)


def test_the_backends_own_timings_are_its_billed_seconds() -> None:
    assert reported_seconds({"timings": {"inference": 0.5, "setup": 0.25}}) == 0.75
    assert reported_seconds({"timings": {"inference": "fast"}}) is None
    assert reported_seconds({"image": {}}) is None
    assert reported_seconds([1, 2]) is None
