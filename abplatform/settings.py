"""Runtime configuration, read from environment variables (prefix ``ABPLATFORM_``).

Every setting has a production-safe default; the local stack (``abplatform up``) only
adds environment variables, it never changes code paths.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of the platform. See README "Configuration reference".

    Durations carry their unit in the name (``_s`` seconds, ``_ms`` milliseconds).
    """

    model_config = SettingsConfigDict(env_prefix="ABPLATFORM_", extra="ignore")

    home: Path = Field(
        default=Path(".abplatform"),
        description="State folder: embedded PostgreSQL data, tiny pipelines, certificates, logs.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy/libpq URL of a PostgreSQL server; unset = embedded PostgreSQL.",
    )
    backend_apps: str = Field(
        default="abplatform/model-v1,abplatform/model-v2,abplatform/upscale,"
        "abplatform/remove-background",
        description="Comma-separated fal app ids that variants and route rules may call.",
    )
    machine_types: str = Field(
        default="",
        description="APP=MACHINE pairs, comma-separated, over the built-in ones (e.g. "
        "abplatform/model-v1=GPU-A100): the machine each backend app runs on.",
    )
    prices_per_hour: str = Field(
        default="",
        description="MACHINE=USD pairs, comma-separated, over fal's public list prices "
        "(e.g. GPU-H100=1.89): the price per hour of each machine type.",
    )
    shadow_max_in_flight: int = Field(
        default=64,
        gt=0,
        description="Most shadow calls one router runs at once; more "
        "mirrored requests are shed (counted), never queued.",
    )
    shadow_max_loop_lag_ms: float = Field(
        default=20.0,
        gt=0,
        description="Event-loop lag (ms) above which the router sheds "
        "new mirrors: it is busy with live work.",
    )
    config_ttl_s: float = Field(
        default=2.0, gt=0, description="How long the router caches an experiment's config."
    )
    backend_timeout_s: float = Field(
        default=60.0, gt=0, description="Client timeout for one backend call."
    )
    log_batch_size: int = Field(default=500, gt=0, description="Rows per logging batch.")
    log_flush_interval_ms: float = Field(
        default=200.0, gt=0, description="Longest time a logged row waits before a flush."
    )
    flush_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest time POST /flush of the router works (s)."
    )
    max_body_bytes: int = Field(
        default=256 * 1024, gt=0, description="Largest request body the router accepts (bytes)."
    )
    operator_token: str | None = Field(
        default=None,
        description="Token that allows a QA override of the variant (x-abplatform-operator-"
        "token); unset: overrides are refused.",
    )
    request_id_key: str | None = Field(
        default=None,
        description="Secret shared by all router runners to sign request ids; unset: "
        "derived from DATABASE_URL.",
    )

    controller: bool = Field(
        default=True,
        description="Run the rollout controller in the router (one acts at a time across "
        "runners, by lease).",
    )
    controller_interval_s: float = Field(
        default=3.0, gt=0, description="How often the rollout controller evaluates (s)."
    )
    controller_lease_s: float = Field(
        default=10.0,
        gt=0,
        description="How long the controller's lease lasts without renewal (s): a dead "
        "controller is replaced within this time.",
    )

    @property
    def known_backend_apps(self) -> tuple[str, ...]:
        """The configured backend app ids, in order."""
        return tuple(a.strip() for a in self.backend_apps.split(",") if a.strip())


#: Largest absolute feedback/metric value accepted (keeps sums of squares far from overflow).
METRIC_VALUE_LIMIT = 1e12


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
