"""What an operator asks for: experiment specs and the rules they must satisfy.

Units: split weights and coverage are **percent** here (each weight ≥ 0, summing to 100;
coverage 0–100); :func:`validate_spec` returns them as fractions for the store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from abplatform.core.errors import InvalidInputError
from abplatform.core.metrics import DEFAULT_GUARDRAILS, check_metric_name, default_guardrails
from abplatform.core.routing import hint_fields

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
WEIGHT_SUM_TOLERANCE = 1e-6  # percent points

ReallocationMode = Literal["sticky", "rerandomize"]
CallMode = Literal["run", "queue"]


NAME_RULE = (
    "use 1-100 characters: lowercase letters, digits, '.', '_' and '-', starting with a "
    "letter or digit (e.g. img-v2)"
)
KEY_RULE = (
    "use 1-64 characters: lowercase letters, digits, '_' and '-', starting with a letter "
    "or digit (e.g. control, v2)"
)


def check_name(name: str) -> str:
    """``name`` (stripped) if it is a valid experiment name.

    Raises:
        InvalidInputError: it is not; the message says what is allowed (never a regex).
    """
    name = name.strip()
    if not re.fullmatch(NAME_PATTERN, name):
        raise InvalidInputError(f"experiment name {name!r} is invalid: {NAME_RULE}")
    return name


def check_key(key: str) -> str:
    """``key`` if it is a valid variant key.

    Raises:
        InvalidInputError: it is not; the message says what is allowed.
    """
    if not re.fullmatch(KEY_PATTERN, key):
        raise InvalidInputError(f"variant key {key!r} is invalid: {KEY_RULE}")
    return key


INPUT_PATH_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
MAX_STEPS = 8


class StepSpec(BaseModel):
    """One more app call of a pipeline variant: its ``app``, endpoint ``path``, the
    ``inputs`` it takes from the previous call's output (argument → dotted path, e.g.
    ``{"image_url": "image.url"}``; none: the whole output) and constant ``arguments``."""

    app: str = Field(min_length=3, max_length=200, description="fal app id")
    path: str = Field(default="", max_length=200, pattern=r"^[A-Za-z0-9_/-]*$")
    inputs: dict[str, str] = Field(default_factory=dict)
    arguments: dict[str, Any] = Field(default_factory=dict)
    call_mode: CallMode = "run"

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if not re.fullmatch(INPUT_PATH_PATTERN, path):
                raise ValueError(
                    f"input {name!r} reads {path!r}; give a dotted path into the previous "
                    "output, e.g. image.url or images.0.url"
                )
        return v


class ShadowSpec(BaseModel):
    """Mirror ``percent`` of a variant's requests to ``app`` (its answer is logged and
    compared, never served)."""

    app: str = Field(min_length=3, max_length=200, description="fal app id")
    percent: float = Field(gt=0, le=100, description="Share of requests mirrored (0-100].")
    call_mode: CallMode = "run"


class NamespaceSpec(BaseModel):
    """A slice ``[start, end)`` (percent of units) of a namespace (a layer): experiments
    sharing a namespace with disjoint slices are mutually exclusive."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$", description="Namespace id.")
    start: float = Field(ge=0, le=100)
    end: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _range(self) -> NamespaceSpec:
        if not self.start < self.end:
            raise ValueError(
                f"namespace slice {self.start:g}-{self.end:g} is empty; give START-END with "
                "START < END, in percent (e.g. 0-50)"
            )
        return self


class VariantSpec(BaseModel):
    """One arm of a new experiment."""

    key: str = Field(description="Short id, e.g. 'control', 'v2' (see KEY_RULE).")
    model_version: str = Field(min_length=1, max_length=100)
    backend_app_id: str = Field(min_length=3, max_length=200, description="fal app id")
    is_control: bool = False
    call_mode: CallMode = Field(
        default="run",
        description="How the router calls the backend: 'run' (one direct call, for "
        "backends that answer within a request) or 'queue' (fal's queue, for long jobs).",
    )

    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Constants merged over the caller's arguments for the first call, "
        "e.g. {'width': 512}.",
    )
    steps: list[StepSpec] = Field(
        default_factory=list,
        description="More app calls: a pipeline (each output feeds the next; the last "
        "one's is served).",
    )
    runner_hint: str | None = Field(
        default=None, max_length=200,
        description="fal's X-Fal-Runner-Hint: text, or {argument} placeholders (e.g. {lora}).",
    )  # fmt: skip
    shadow: ShadowSpec | None = Field(default=None, description="Mirror requests to an app.")

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return check_key(v)

    @property
    def apps(self) -> list[str]:
        """Every app the variant calls (steps and shadow included)."""
        out = [self.backend_app_id, *(s.app for s in self.steps)]
        return out + ([self.shadow.app] if self.shadow else [])


class ExperimentSpec(BaseModel):
    """Everything needed to create an experiment. Weights and coverage in percent."""

    name: str = Field(description="Unique name (see NAME_RULE).")
    description: str = ""
    variants: list[VariantSpec]
    weights: list[float] | None = Field(
        default=None, description="Percent per variant, same order; default equal split."
    )
    coverage: float = Field(default=100.0, description="Percent of units enrolled (0–100).")
    primary_metric: str = Field(default="error_rate", min_length=1, max_length=100)
    guardrails: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GUARDRAILS),
        description="Default: error_rate and latency_p95, plus fallback_rate when the "
        "experiment falls back to the control.",
    )
    hash_seed: str | None = Field(default=None, description="Default: random.")
    hash_version: int = 2
    fallback_to_control: bool = False
    namespace: NamespaceSpec | None = Field(
        default=None,
        description="A slice of a namespace shared with mutually exclusive experiments.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("primary_metric")
    @classmethod
    def _primary(cls, v: str) -> str:
        return check_metric_name(v)

    @field_validator("guardrails")
    @classmethod
    def _guardrails(cls, v: list[str]) -> list[str]:
        return [check_metric_name(m) for m in v]

    @model_validator(mode="after")
    def _fallback_guardrail(self) -> ExperimentSpec:
        if "guardrails" not in self.model_fields_set:
            self.guardrails = list(default_guardrails(self.fallback_to_control))
        return self


@dataclass(frozen=True)
class ValidSpec:
    """A validated spec: its weights and coverage as fractions."""

    spec: ExperimentSpec
    weights: tuple[float, ...]
    coverage: float


def validate_weights_percent(weights: Sequence[float], n_variants: int) -> list[float]:
    """Check percent weights and return them as fractions.

    Rules: exactly one weight per variant, each finite and ≥ 0, summing to 100 (±1e-6).

    Raises:
        InvalidInputError: a rule is broken; the message names it and the allowed values.
    """
    weights = list(weights)
    if len(weights) != n_variants:
        raise InvalidInputError(
            f"got {len(weights)} weights for {n_variants} variants; give exactly one weight "
            "per variant, in percent, summing to 100"
        )
    for i, w in enumerate(weights):
        if not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise InvalidInputError(
                f"weight #{i + 1} is {w!r}; each weight must be a number ≥ 0 (percent)"
            )
    total = sum(weights)
    if abs(total - 100.0) > WEIGHT_SUM_TOLERANCE:
        raise InvalidInputError(
            f"weights sum to {total:g}%, they must sum to 100% (e.g. 50,50 or 80,20)"
        )
    return [w / 100.0 for w in weights]


def equal_weights_percent(n: int) -> list[float]:
    """``n`` equal percent weights that sum to exactly 100 (the last absorbs rounding)."""
    weights = [100.0 / n] * n
    weights[-1] = 100.0 - sum(weights[:-1])
    return weights


def validate_coverage(coverage: float) -> float:
    """Check a coverage in percent and return it as a fraction.

    Raises:
        InvalidInputError: not a finite percent in [0, 100].
    """
    if not math.isfinite(coverage) or not 0 <= coverage <= 100:
        raise InvalidInputError(f"coverage is {coverage!r}; it must be a percent in [0, 100]")
    return coverage / 100.0


def validate_mode(mode: str) -> ReallocationMode:
    """Check a reallocation mode (``sticky`` or ``rerandomize``).

    Raises:
        InvalidInputError: any other value.
    """
    if mode not in ("sticky", "rerandomize"):
        raise InvalidInputError(f"mode is {mode!r}; allowed: sticky, rerandomize")
    return mode  # type: ignore[return-value]


def validate_variants(specs: Sequence[VariantSpec], known_apps: Sequence[str] | None) -> None:
    """At least two variants, unique keys, exactly one control, known backend app ids
    (``known_apps`` None: any app id).

    Raises:
        InvalidInputError: a rule is broken.
    """
    n = len(specs)
    if n < 2:
        raise InvalidInputError(f"an experiment needs at least 2 variants, got {n}")
    keys = [v.key for v in specs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InvalidInputError(f"variant keys must be unique; repeated: {', '.join(dupes)}")
    controls = [v.key for v in specs if v.is_control]
    if len(controls) != 1:
        raise InvalidInputError(
            f"exactly one variant must be the control, got {len(controls)}"
            + (f" ({', '.join(controls)})" if controls else "")
        )
    for v in specs:
        check_call_options(v)
    if known_apps is None:
        return
    for v in specs:
        for app in v.apps:
            if app not in known_apps:
                role = "mirrors to" if v.shadow and app == v.shadow.app else "uses"
                raise InvalidInputError(
                    f"variant '{v.key}' {role} unknown backend app id '{app}'; known: "
                    f"{', '.join(known_apps)} (set ABPLATFORM_BACKEND_APPS to add more)"
                )


def check_call_options(v: VariantSpec) -> None:
    """A variant's pipeline, runner hint and shadow are well formed.

    Raises:
        InvalidInputError: more than :data:`MAX_STEPS` steps, a bad runner-hint template,
            or a shadow whose app is one the variant itself calls.
    """
    if len(v.steps) > MAX_STEPS:
        raise InvalidInputError(
            f"variant '{v.key}' has {len(v.steps)} pipeline steps; at most {MAX_STEPS}"
        )
    if v.runner_hint is not None:
        hint_fields(v.runner_hint)
    if v.shadow is not None and v.shadow.app in (v.backend_app_id, *(s.app for s in v.steps)):
        raise InvalidInputError(
            f"variant '{v.key}' mirrors to {v.shadow.app}, an app it already calls; a shadow "
            "must be another app"
        )


def validate_spec(spec: ExperimentSpec, known_apps: Sequence[str] | None) -> ValidSpec:
    """Check a spec against every rule; return it with fractions.

    Raises:
        InvalidInputError: fewer than 2 variants, not exactly one control, duplicate keys,
            unknown backend app id, unknown hash version, bad weights (one per variant,
            ≥ 0, sum 100) or coverage (0–100).
    """
    validate_variants(spec.variants, known_apps)
    if spec.hash_version not in (1, 2):
        raise InvalidInputError(f"hash_version is {spec.hash_version}; allowed: 1 or 2")
    n = len(spec.variants)
    weights = spec.weights if spec.weights is not None else equal_weights_percent(n)
    fractions = validate_weights_percent(weights, n)
    return ValidSpec(spec, tuple(fractions), validate_coverage(spec.coverage))


__all__ = [
    "KEY_PATTERN",
    "KEY_RULE",
    "MAX_STEPS",
    "NAME_PATTERN",
    "NAME_RULE",
    "ExperimentSpec",
    "NamespaceSpec",
    "ReallocationMode",
    "ShadowSpec",
    "StepSpec",
    "ValidSpec",
    "VariantSpec",
    "check_call_options",
    "check_key",
    "check_name",
    "equal_weights_percent",
    "validate_coverage",
    "validate_mode",
    "validate_spec",
    "validate_variants",
    "validate_weights_percent",
]
