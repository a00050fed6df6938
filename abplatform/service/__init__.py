"""Application services: experiment commands and reads, reports, imports.

The CLI and the dashboard call these functions and never the store directly (an
import-linter contract enforces it). ``from abplatform import service`` gives the whole
surface: the commands and reads of :mod:`~abplatform.service.experiments`, the reports of
:mod:`~abplatform.service.reports`, the import of :mod:`~abplatform.service.imports`, the
database of :mod:`~abplatform.service.database`, and the core's specs, views and errors
they take and return.
"""

from abplatform.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceError,
    StaleWriteError,
)
from abplatform.core.metrics import DEFAULT_GUARDRAILS
from abplatform.core.specs import (
    KEY_PATTERN,
    NAME_PATTERN,
    ExperimentSpec,
    VariantSpec,
    validate_weights_percent,
)
from abplatform.core.views import ExperimentView, PhaseView, VariantView, WeightChangePreview
from abplatform.service.experiments import (
    as_dict,
    audit_log,
    create_experiment,
    create_imported_experiment,
    get_experiment,
    list_experiments,
    preview_weight_change,
    promote,
    request_counts,
    set_weights,
    start_experiment,
    stop_experiment,
)

__all__ = [
    "DEFAULT_GUARDRAILS",
    "KEY_PATTERN",
    "NAME_PATTERN",
    "ConflictError",
    "ExperimentSpec",
    "ExperimentView",
    "InvalidInputError",
    "NotFoundError",
    "PhaseView",
    "ServiceError",
    "StaleWriteError",
    "VariantSpec",
    "VariantView",
    "WeightChangePreview",
    "as_dict",
    "audit_log",
    "create_experiment",
    "create_imported_experiment",
    "get_experiment",
    "list_experiments",
    "preview_weight_change",
    "promote",
    "request_counts",
    "set_weights",
    "start_experiment",
    "stop_experiment",
    "validate_weights_percent",
]
