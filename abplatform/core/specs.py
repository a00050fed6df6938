"""What an operator asks for: experiment specs and the rules they must satisfy.

Units: split weights and coverage are **percent** here (each weight ≥ 0, summing to 100;
coverage 0–100); :func:`validate_spec` returns them as fractions for the store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from abplatform.core.errors import InvalidInputError
from abplatform.core.metrics import DEFAULT_GUARDRAILS, default_guardrails

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

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return check_key(v)


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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

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
    if known_apps is None:
        return
    for v in specs:
        if v.backend_app_id not in known_apps:
            raise InvalidInputError(
                f"variant '{v.key}' uses unknown backend app id '{v.backend_app_id}'; "
                f"known: {', '.join(known_apps)} (set ABPLATFORM_BACKEND_APPS to add more)"
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
    "NAME_PATTERN",
    "NAME_RULE",
    "ExperimentSpec",
    "ReallocationMode",
    "ValidSpec",
    "VariantSpec",
    "check_key",
    "check_name",
    "equal_weights_percent",
    "validate_coverage",
    "validate_mode",
    "validate_spec",
    "validate_variants",
    "validate_weights_percent",
]
