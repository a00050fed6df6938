"""Read models of experiments: what the services return and the analysis takes as config.

Units: split weights and coverage are **percent** here (the database stores fractions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from abplatform.core.errors import NotFoundError


@dataclass(frozen=True)
class VariantView:
    """A variant as stored. ``weight`` is the current phase's share in percent.

    ``steps`` are the app ids a pipeline variant calls after ``backend_app_id``;
    ``runner_hint`` the template of fal's runner hint; ``shadow_app_id`` the app it
    mirrors ``shadow_percent`` percent of its requests to.
    """

    id: int
    key: str
    model_version: str
    backend_app_id: str
    is_control: bool
    weight: float
    call_mode: str = "run"
    steps: tuple[str, ...] = ()
    runner_hint: str | None = None
    shadow_app_id: str | None = None
    shadow_percent: float = 0.0
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def calls_text(self) -> str:
        """How the variant is served, in words: ``a → b → c``, hint and shadow."""
        text = " → ".join((self.backend_app_id, *self.steps))
        if self.arguments:
            text += " (" + ", ".join(f"{k}={v}" for k, v in self.arguments.items()) + ")"
        if self.runner_hint:
            text += f"; runner hint {self.runner_hint}"
        if self.shadow_app_id:
            text += f"; shadow {self.shadow_percent:g}% → {self.shadow_app_id}"
        return text


@dataclass(frozen=True)
class PhaseView:
    """A phase: its number, weights in percent, seed, coverage (percent) and time span."""

    id: int
    number: int
    weights: tuple[float, ...]
    hash_seed: str
    coverage: float
    reason: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class ExperimentView:
    """An experiment with its variants and phases (current phase last)."""

    id: int
    name: str
    description: str
    status: str
    hash_seed: str
    hash_version: int
    coverage: float
    primary_metric: str
    guardrails: tuple[str, ...]
    fallback_to_control: bool
    source: str
    winner: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    variants: tuple[VariantView, ...]
    phases: tuple[PhaseView, ...]
    namespace: tuple[str, float, float] | None = None

    @property
    def namespace_text(self) -> str | None:
        """``"images 0-50%"`` (the namespace and the slice of units, percent), or None."""
        if self.namespace is None:
            return None
        name, start, end = self.namespace
        return f"{name} {start:g}-{end:g}%"

    @property
    def current_phase(self) -> PhaseView:
        """The newest phase."""
        return self.phases[-1]

    @property
    def control(self) -> VariantView:
        """The control variant."""
        return next(v for v in self.variants if v.is_control)

    @property
    def is_live(self) -> bool:
        """Whether its data come from the router's logs (not from an import)."""
        return self.source == "live"

    def variant(self, key: str) -> VariantView:
        """The variant with ``key``; :class:`NotFoundError` lists the allowed keys."""
        for v in self.variants:
            if v.key == key:
                return v
        allowed = ", ".join(v.key for v in self.variants)
        raise NotFoundError(f"experiment '{self.name}' has no variant '{key}'; variants: {allowed}")

    def phase(self, number: int) -> PhaseView:
        """The phase with ``number``; :class:`NotFoundError` gives the range."""
        for p in self.phases:
            if p.number == number:
                return p
        raise NotFoundError(
            f"experiment '{self.name}' has phases 1..{len(self.phases)}; got phase {number}"
        )


@dataclass(frozen=True)
class WeightChangePreview:
    """Effect of a weight change: the fraction (0–1) of the hash space that changes variant."""

    mode: str
    old_weights: tuple[float, ...]
    new_weights: tuple[float, ...]
    moved_fraction: float


@dataclass(frozen=True)
class RouteView:
    """A route as stored: its declared ``arguments`` (name → ``{"type", "default"}``) and
    ordered ``rules`` (each a dict of :class:`abplatform.core.routes.RuleSpec` fields)."""

    id: int
    name: str
    description: str
    version: int
    arguments: dict[str, Any]
    rules: tuple[dict[str, Any], ...]
    created_at: datetime
    updated_at: datetime


__all__ = ["ExperimentView", "PhaseView", "RouteView", "VariantView", "WeightChangePreview"]
