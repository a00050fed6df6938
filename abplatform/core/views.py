"""Read models of experiments: what the services return and the analysis takes as config.

Units: split weights and coverage are **percent** here (the database stores fractions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from abplatform.core.errors import NotFoundError


@dataclass(frozen=True)
class VariantView:
    """A variant as stored. ``weight`` is the current phase's share in percent."""

    id: int
    key: str
    model_version: str
    backend_app_id: str
    is_control: bool
    weight: float


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


__all__ = ["ExperimentView", "PhaseView", "VariantView", "WeightChangePreview"]
