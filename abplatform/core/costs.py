"""What a request costs: machine type and price per second of each backend app.

fal bills an app per second of runner time (setup, idle, running, draining). A request's
share of it is the time the backend spent on it, its **billed seconds**: the backend's
own timing when it reports one (fal's queue reports ``metrics.inference_time``; fal's
model APIs and our backends return ``timings`` in seconds, which may list setup too),
else the router's wall time of the call (an upper bound: it includes the network hop).
A call that never reached the backend (unreachable) bills nothing. A pipeline's billed
seconds and cost are the sums over its steps.

The price table maps a machine type to a price per hour (shown per second). Defaults are
fal's **public list prices** as third-party copies of fal's pricing page showed them in
2026 (:data:`PUBLIC_PRICES_PER_HOUR`); no public source lists the CPU tiers, so they have
no default. Set ``ABPLATFORM_PRICES_PER_HOUR`` (``GPU-A100=0.99,GPU-H100=1.89``) to your
contract's prices and ``ABPLATFORM_MACHINE_TYPES`` (``owner/app=GPU-H100,...``) to the
machine each app runs on. An app without a machine type or a price has no cost (None):
the report says so instead of showing $0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from abplatform.core.errors import InvalidInputError

PUBLIC_PRICES_PER_HOUR: dict[str, float] = {
    "GPU-A100": 0.99,
    "GPU-H100": 1.89,
    "GPU-H200": 4.50,
}
"""USD per hour, fal's public list prices as third-party copies of its pricing page showed
them in 2026 (shared/reference/platform_notes.md); not a quote."""

PUBLIC_PRICE_SOURCE = "fal public list price (2026, third-party copy of fal's pricing page)"

DEFAULT_MACHINE_TYPES: dict[str, str] = {
    "abplatform/model-v1": "GPU-A100",
    "abplatform/model-v2": "GPU-H100",
    "abplatform/upscale": "GPU-A100",
    "abplatform/remove-background": "GPU-A100",
}
"""The machine type each of our backend apps declares (its ``fal.App.machine_type``)."""


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``"a=x,b=y"`` as ``{"a": "x", "b": "y"}`` (blank entries ignored).

    Raises:
        InvalidInputError: an entry without ``=`` or with an empty side.
    """
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInputError(
                f"{what}: expected NAME=VALUE pairs separated by commas, got {item!r}"
            )
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class PriceTable:
    """Machine type per app id and USD per hour per machine type; see the module docstring.

    ``sources`` says where each price comes from (the public list, or a setting).
    """

    machine_types: Mapping[str, str]
    prices_per_hour: Mapping[str, float]
    sources: Mapping[str, str]

    @classmethod
    def from_settings(cls, machine_types: str = "", prices_per_hour: str = "") -> PriceTable:
        """The defaults overridden by the settings' ``NAME=VALUE`` lists.

        Raises:
            InvalidInputError: a malformed list, or a price that is not a finite number ≥ 0.
        """
        machines = {**DEFAULT_MACHINE_TYPES, **parse_pairs(machine_types, "machine types")}
        prices: dict[str, float] = dict(PUBLIC_PRICES_PER_HOUR)
        sources = dict.fromkeys(PUBLIC_PRICES_PER_HOUR, PUBLIC_PRICE_SOURCE)
        for machine, text in parse_pairs(prices_per_hour, "prices per hour").items():
            try:
                price = float(text.removeprefix("$").removesuffix("/h"))
            except ValueError:
                price = math.nan
            if not math.isfinite(price) or price < 0:
                raise InvalidInputError(
                    f"price of {machine} is {text!r}; give USD per hour, a number ≥ 0"
                )
            prices[machine] = price
            sources[machine] = "setting ABPLATFORM_PRICES_PER_HOUR"
        return cls(machines, prices, sources)

    def machine(self, app_id: str) -> str | None:
        """The machine type of ``app_id`` (None: unknown)."""
        return self.machine_types.get(app_id)

    def price_per_s(self, app_id: str) -> float | None:
        """USD per second of ``app_id``'s machine (None: machine or price unknown)."""
        machine = self.machine_types.get(app_id)
        price = self.prices_per_hour.get(machine) if machine else None
        return None if price is None else price / 3600.0

    def cost(self, app_id: str, billed_s: float) -> float | None:
        """USD for ``billed_s`` seconds of ``app_id`` (None when its price is unknown)."""
        per_s = self.price_per_s(app_id)
        return None if per_s is None else per_s * billed_s

    def rows(self, apps: list[str]) -> list[dict[str, Any]]:
        """One row per app: app, machine, USD per hour and second, source (for views)."""
        out = []
        for app in apps:
            machine = self.machine(app)
            hour = self.prices_per_hour.get(machine) if machine else None
            out.append({
                "app": app, "machine": machine, "usd_per_hour": hour,
                "usd_per_second": None if hour is None else hour / 3600.0,
                "source": self.sources.get(machine, "no price: set ABPLATFORM_PRICES_PER_HOUR")
                if machine else "no machine type: set ABPLATFORM_MACHINE_TYPES",
            })  # fmt: skip
        return out


def reported_seconds(result: Any) -> float | None:
    """The backend's own timing of a call from its answer: the sum of a ``timings``
    object's numbers (fal's convention, seconds: ``{"inference": 0.8}``), None when the
    answer has none."""
    if not isinstance(result, dict):
        return None
    timings = result.get("timings")
    if not isinstance(timings, dict):
        return None
    values = [
        v for v in timings.values()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    ]  # fmt: skip
    return float(sum(values)) if values else None


__all__ = [
    "DEFAULT_MACHINE_TYPES",
    "PUBLIC_PRICES_PER_HOUR",
    "PUBLIC_PRICE_SOURCE",
    "PriceTable",
    "parse_pairs",
    "reported_seconds",
]
