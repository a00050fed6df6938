"""Parsing the CLI's compact forms of routing patterns into the service's specs.

* ``--rule 'NAME: CONDITION -> TARGET...'`` (``CONDITION`` may be ``else``; ``TARGET``
  items: ``app:APP``, ``experiment:NAME`` (repeat for a layer), ``hint:TEMPLATE``,
  ``version:LABEL``, ``queue``);
* ``--arg NAME:TYPE[=DEFAULT]`` (``TYPE``: number, string, boolean);
* ``--step KEY=APP[,ARG=PATH][,ARG:=JSON]`` (a pipeline step of variant ``KEY``: each
  ``ARG=PATH`` reads the previous output, each ``ARG:=JSON`` is a constant);
* ``--set KEY.ARG=JSON`` (a constant over the caller's arguments for variant ``KEY``);
* ``--hint KEY=TEMPLATE``, ``--shadow KEY=APP@PERCENT``, ``--namespace NAME:START-END``.

Every parser raises :class:`ValueError` with the form it expected.
"""

from __future__ import annotations

import json
from typing import Any

from abplatform import service

RULE_FORM = (
    "NAME: CONDITION -> app:APP | experiment:NAME... [hint:TEMPLATE] [version:LABEL] [queue] "
    "(e.g. 'small: width * height <= 1048576 -> app:abplatform/model-v1'; CONDITION 'else' "
    "matches every request)"
)


def parse_rule(text: str) -> service.RuleSpec:
    """A rule from ``NAME: CONDITION -> TARGET...`` (see the module docstring)."""
    head, arrow, targets = text.rpartition("->")
    name, colon, condition = head.partition(":")
    if not arrow or not colon or not name.strip() or not condition.strip():
        raise ValueError(f"--rule must be {RULE_FORM}, got {text!r}")
    fields: dict[str, Any] = {"name": name.strip(), "experiments": []}
    when = condition.strip()
    fields["when"] = None if when == "else" else when
    for item in targets.split():
        kind, _, value = item.partition(":")
        if kind == "queue" and not value:
            fields["call_mode"] = "queue"
        elif kind == "experiment" and value:
            fields["experiments"].append(value)
        elif kind in ("app", "hint", "version") and value:
            fields[{"hint": "runner_hint", "version": "model_version"}.get(kind, kind)] = value
        else:
            raise ValueError(f"--rule target {item!r} is unknown; {RULE_FORM}")
    return service.RuleSpec(**fields)


def parse_argument(text: str) -> tuple[str, service.ArgumentSpec]:
    """An argument declaration from ``NAME:TYPE[=DEFAULT]``."""
    head, eq, default = text.partition("=")
    name, _, kind = head.partition(":")
    if kind not in ("number", "string", "boolean") or not name:
        raise ValueError(
            f"--arg must be NAME:TYPE[=DEFAULT] with TYPE number, string or boolean, got {text!r}"
        )
    value: Any = None
    if eq:
        value = {"number": _number, "boolean": _boolean, "string": str}[kind](default)
    return name, service.ArgumentSpec(type=kind, default=value)


def _number(text: str) -> float | int:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"default {text!r} is not a number") from None
    return int(number) if number.is_integer() and "." not in text else number


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"default {text!r} is not true or false")
    return text == "true"


def _keyed(text: str, option: str, form: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key or not value:
        raise ValueError(f"{option} must be {form}, got {text!r}")
    return key, value


def parse_step(text: str) -> tuple[str, service.StepSpec]:
    """``(variant key, step)`` from ``KEY=APP[,ARG=PATH][,ARG:=JSON]``."""
    form = "KEY=APP[,ARG=PATH][,ARG:=JSON] (e.g. treatment=abplatform/upscale,image_url=image.url)"
    key, rest = _keyed(text, "--step", form)
    app, *items = rest.split(",")
    inputs: dict[str, str] = {}
    constants: dict[str, Any] = {}
    for item in items:
        if ":=" in item:
            name, _, raw = item.partition(":=")
            try:
                constants[name] = json.loads(raw)
            except ValueError:
                raise ValueError(f"--step constant {item!r} is not NAME:=JSON") from None
        else:
            name, eq, path = item.partition("=")
            if not eq or not name or not path:
                raise ValueError(f"--step must be {form}, got {text!r}")
            inputs[name] = path
    return key, service.StepSpec(app=app, inputs=inputs, arguments=constants)


def parse_set(text: str) -> tuple[str, str, Any]:
    """``(variant key, argument, value)`` from ``KEY.ARG=JSON``."""
    head, value = _keyed(text, "--set", "KEY.ARG=JSON (e.g. treatment.width=512)")
    key, dot, arg = head.partition(".")
    if not dot or not key or not arg:
        raise ValueError(f"--set must be KEY.ARG=JSON, got {text!r}")
    try:
        return key, arg, json.loads(value)
    except ValueError:
        return key, arg, value  # a bare word is a string


def parse_shadow(text: str) -> tuple[str, service.ShadowSpec]:
    """``(variant key, shadow)`` from ``KEY=APP@PERCENT``."""
    form = "KEY=APP@PERCENT (e.g. control=abplatform/model-v2@10)"
    key, rest = _keyed(text, "--shadow", form)
    app, at, percent = rest.rpartition("@")
    try:
        share = float(percent)
    except ValueError:
        share = None
    if not at or share is None:
        raise ValueError(f"--shadow must be {form}, got {text!r}")
    return key, service.ShadowSpec(app=app, percent=share)


def parse_namespace(text: str) -> service.NamespaceSpec:
    """A namespace slice from ``NAME:START-END`` (percent of units)."""
    name, _, span = text.partition(":")
    start, dash, end = span.partition("-")
    try:
        bounds = (float(start), float(end))
    except ValueError:
        bounds = None
    if not dash or bounds is None:
        raise ValueError(f"--namespace must be NAME:START-END in percent (e.g. images:0-50), "
                         f"got {text!r}")  # fmt: skip
    return service.NamespaceSpec(name=name, start=bounds[0], end=bounds[1])


def apply_variant_options(
    variants: list[service.VariantSpec],
    *, steps: list[str], sets: list[str], hints: list[str], shadows: list[str],
) -> list[service.VariantSpec]:  # fmt: skip
    """``variants`` with the pipeline steps, argument constants, runner hints and shadows
    given by ``--step``, ``--set``, ``--hint`` and ``--shadow``.

    Raises:
        ValueError: a malformed option, or one naming no variant.
    """
    by_key = {v.key: v.model_dump() for v in variants}

    def target(key: str, option: str) -> dict[str, Any]:
        if key not in by_key:
            raise ValueError(f"{option} names variant {key!r}; variants: {', '.join(by_key)}")
        return by_key[key]

    for text in steps:
        key, step = parse_step(text)
        target(key, "--step")["steps"].append(step.model_dump())
    for text in sets:
        key, arg, value = parse_set(text)
        target(key, "--set")["arguments"][arg] = value
    for text in hints:
        key, template = _keyed(text, "--hint", "KEY=TEMPLATE (e.g. treatment={lora})")
        target(key, "--hint")["runner_hint"] = template
    for text in shadows:
        key, shadow = parse_shadow(text)
        target(key, "--shadow")["shadow"] = shadow.model_dump()
    return [service.VariantSpec.model_validate(v) for v in by_key.values()]


__all__ = [
    "apply_variant_options",
    "parse_argument",
    "parse_namespace",
    "parse_rule",
    "parse_set",
    "parse_shadow",
    "parse_step",
]
