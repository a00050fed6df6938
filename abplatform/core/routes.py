"""Routes: ordered rules on a request's arguments that pick a backend app or an experiment.

A route (``POST /`` with ``"route": NAME`` instead of ``"experiment"``) declares the
arguments its rules read, with a type and an optional default, and an ordered list of
rules. Each rule has a name, a condition (:mod:`abplatform.core.expressions`; none: it
matches every request) and a target:

* ``app``: a backend app (optionally with a runner hint and a ``model_version`` label);
* ``experiments``: one experiment (the A/B test runs inside that rule only) or a *layer*
  of experiments that share a namespace with disjoint slices (mutually exclusive: a unit
  is in at most one of them). A unit in none of them goes to the rule's ``app`` if it
  has one, else it is served the first experiment's control, not analysed.

The first rule whose condition holds serves the request; the matched rule is logged with
it. Rules are checked when saved: names, conditions against the declared arguments, app
ids, experiments and their namespaces; a bad route is refused whole and changes nothing.
Only the last rule may lack a condition (a rule after a catch-all could never match).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from abplatform.core.errors import InvalidInputError
from abplatform.core.expressions import (
    ArgType,
    Argument,
    Condition,
    EvaluationError,
    check_value,
    compile_condition,
)
from abplatform.core.routing import RoutingVariant, hint_fields
from abplatform.core.specs import CallMode, check_key, check_name

MAX_RULES = 50


class ArgumentSpec(BaseModel):
    """A request argument the rules may read: its type and the default of a request that
    lacks it (None: required by any rule that reads it)."""

    type: ArgType
    default: Any = None


class RuleSpec(BaseModel):
    """One rule: ``when`` (a condition; None: matches everything) and its target, an
    ``app`` and/or ``experiments`` (see the module docstring)."""

    name: str = Field(description="Short id, logged with each request it serves.")
    when: str | None = Field(default=None, description="Condition, e.g. width * height <= 1e6.")
    app: str | None = Field(default=None, min_length=3, max_length=200)
    experiments: list[str] = Field(default_factory=list)
    model_version: str | None = Field(default=None, min_length=1, max_length=100)
    call_mode: CallMode = "run"
    runner_hint: str | None = Field(default=None, max_length=200)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_key(v)
        except InvalidInputError as exc:
            raise ValueError(str(exc).replace("variant key", "rule name")) from None

    @property
    def target_text(self) -> str:
        """The target in words, e.g. ``app abplatform/model-v1`` or ``experiment big``."""
        parts = []
        if self.experiments:
            noun = "experiment" if len(self.experiments) == 1 else "experiments"
            parts.append(f"{noun} {', '.join(self.experiments)}")
        if self.app:
            parts.append(("else " if self.experiments else "") + f"app {self.app}")
        return "; ".join(parts)


class RouteSpec(BaseModel):
    """A route as an operator writes it (see the module docstring)."""

    name: str
    description: str = ""
    arguments: dict[str, ArgumentSpec] = Field(default_factory=dict)
    rules: list[RuleSpec]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)


@dataclass(frozen=True)
class ExperimentInfo:
    """What route validation needs to know of an experiment: its name, status and
    namespace ``(id, start, end)`` (fractions) or None."""

    name: str
    status: str
    namespace: tuple[str, float, float] | None


def declared(arguments: Mapping[str, ArgumentSpec]) -> dict[str, Argument]:
    """The declared arguments as :class:`Argument` (names checked, defaults typed).

    Raises:
        InvalidInputError: a name that is not an identifier, or a default of another type.
    """
    out = {}
    for name, spec in arguments.items():
        if not name.isidentifier():
            raise InvalidInputError(
                f"argument name {name!r} is invalid: use letters, digits and _ (e.g. width)"
            )
        arg = Argument(name, spec.type, spec.default)
        if spec.default is not None:
            try:
                check_value(arg, spec.default)
            except EvaluationError as exc:
                raise InvalidInputError(f"default of {exc}") from None
        out[name] = arg
    return out


def _check_layer(rule: RuleSpec, infos: Mapping[str, ExperimentInfo]) -> None:
    """Several experiments in one rule must share a namespace with disjoint slices."""
    if len(rule.experiments) < 2:
        return
    spaces = [infos[n].namespace for n in rule.experiments]
    if any(s is None for s in spaces) or len({s[0] for s in spaces if s}) != 1:
        raise InvalidInputError(
            f"rule '{rule.name}' holds experiments {', '.join(rule.experiments)}: experiments "
            "sharing a rule must share one namespace with disjoint slices (create them with "
            "--namespace NAME:START-END), so that a unit is in at most one of them"
        )
    slices = sorted((s[1], s[2], n) for s, n in zip(spaces, rule.experiments, strict=True) if s)
    for (_, end, a), (start, _, b) in itertools.pairwise(slices):
        if start < end:
            raise InvalidInputError(
                f"rule '{rule.name}': the namespace slices of {a} and {b} overlap; a unit "
                "could be in both"
            )


def _check_rule(
    rule: RuleSpec,
    args: Mapping[str, Argument],
    known_apps: Sequence[str] | None,
    infos: Mapping[str, ExperimentInfo],
) -> None:
    if not rule.app and not rule.experiments:
        raise InvalidInputError(f"rule '{rule.name}' needs a target: an app or an experiment")
    if rule.when is not None:
        compile_condition(rule.when, args)
    if rule.app and known_apps is not None and rule.app not in known_apps:
        raise InvalidInputError(
            f"rule '{rule.name}' uses unknown backend app id '{rule.app}'; known: "
            f"{', '.join(known_apps)} (set ABPLATFORM_BACKEND_APPS to add more)"
        )
    for name in rule.experiments:
        if name not in infos:
            known = ", ".join(sorted(infos)) or "none yet"
            raise InvalidInputError(
                f"rule '{rule.name}' names unknown experiment '{name}'; known: {known}"
            )
        if infos[name].status == "stopped":
            raise InvalidInputError(
                f"rule '{rule.name}' names experiment '{name}', which is stopped and serves nothing"
            )
    if len(set(rule.experiments)) < len(rule.experiments):
        raise InvalidInputError(f"rule '{rule.name}' names an experiment twice")
    _check_layer(rule, infos)
    if rule.runner_hint is not None:
        for name in hint_fields(rule.runner_hint):
            if name not in args:
                raise InvalidInputError(
                    f"rule '{rule.name}': runner hint reads undeclared argument '{name}'"
                )


def validate_route(
    spec: RouteSpec,
    known_apps: Sequence[str] | None,
    experiments: Mapping[str, ExperimentInfo],
) -> RouteSpec:
    """Check every rule of ``spec``; return it unchanged.

    Raises:
        InvalidInputError: no rules or too many, a repeated rule name, a catch-all rule
            before the last, a rule without a target, a bad condition (syntax, unknown
            argument, types), an unknown app or experiment, a stopped experiment, a
            layer whose experiments do not share a namespace with disjoint slices, a bad
            runner hint, or a bad argument declaration.
    """
    if not spec.rules or len(spec.rules) > MAX_RULES:
        raise InvalidInputError(f"a route needs 1-{MAX_RULES} rules, got {len(spec.rules)}")
    args = declared(spec.arguments)
    names = [r.name for r in spec.rules]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInputError(f"rule names must be unique; repeated: {', '.join(repeated)}")
    for i, rule in enumerate(spec.rules):
        if rule.when is None and i < len(spec.rules) - 1:
            raise InvalidInputError(
                f"rule '{rule.name}' has no condition, so it matches every request and the "
                f"rules after it ({', '.join(names[i + 1 :])}) could never match; give it a "
                "condition or move it last"
            )
        _check_rule(rule, args, known_apps, experiments)
    return spec


# ----------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class CompiledRule:
    """A rule as the router evaluates it: its condition (None: always), its app target as
    a :class:`RoutingVariant` (key = rule name; None without an app) and experiments."""

    name: str
    condition: Condition | None
    app: RoutingVariant | None
    experiments: tuple[str, ...]
    spec: RuleSpec


class NoRuleMatchedError(InvalidInputError):
    """No rule of the route matches the request's arguments (answered with 422)."""


@dataclass(frozen=True)
class RouteConfig:
    """A snapshot of one route for the router (see :func:`compile_route`)."""

    id: int
    name: str
    version: int
    rules: tuple[CompiledRule, ...]

    def match(self, arguments: Mapping[str, Any]) -> CompiledRule:
        """The first rule whose condition ``arguments`` satisfy.

        Raises:
            EvaluationError: a condition cannot be evaluated on these arguments (missing
                without default, wrong type, division by zero); the message names the
                route and rule.
            NoRuleMatchedError: no rule matches.
        """
        for rule in self.rules:
            if rule.condition is None:
                return rule
            try:
                if rule.condition.evaluate(arguments):
                    return rule
            except EvaluationError as exc:
                raise EvaluationError(f"route '{self.name}', rule '{rule.name}': {exc}") from None
        names = ", ".join(r.name for r in self.rules)
        raise NoRuleMatchedError(
            f"no rule of route '{self.name}' matches these arguments (rules: {names}); the "
            "route's owner can add a last rule without a condition to catch the rest"
        )


def _alias(app_id: str) -> str:
    return app_id.rsplit("/", 1)[-1]


def compile_route(route_id: int, version: int, spec: RouteSpec) -> RouteConfig:
    """The router's snapshot of a saved (validated) route: conditions compiled.

    Raises:
        ExpressionError: a condition no longer compiles (it was validated when saved).
    """
    args = declared(spec.arguments)
    rules = []
    for r in spec.rules:
        app = None
        if r.app:
            app = RoutingVariant(
                id=0, key=r.name, model_version=r.model_version or _alias(r.app),
                backend_app_id=r.app, is_control=False, call_mode=r.call_mode,
                runner_hint=r.runner_hint,
            )  # fmt: skip
        condition = compile_condition(r.when, args) if r.when is not None else None
        rules.append(CompiledRule(r.name, condition, app, tuple(r.experiments), r))
    return RouteConfig(route_id, spec.name, version, tuple(rules))


__all__ = [
    "MAX_RULES",
    "ArgumentSpec",
    "CompiledRule",
    "ExperimentInfo",
    "NoRuleMatchedError",
    "RouteConfig",
    "RouteSpec",
    "RuleSpec",
    "compile_route",
    "declared",
    "validate_route",
]
