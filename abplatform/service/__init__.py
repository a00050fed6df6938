"""Application services: experiment and route commands and reads, reports, imports.

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
from abplatform.core.routes import ArgumentSpec, RouteSpec, RuleSpec
from abplatform.core.specs import (
    KEY_PATTERN,
    NAME_PATTERN,
    ExperimentSpec,
    NamespaceSpec,
    ShadowSpec,
    StepSpec,
    VariantSpec,
    validate_weights_percent,
)
from abplatform.core.views import (
    ExperimentView,
    PhaseView,
    RouteView,
    VariantView,
    WeightChangePreview,
)
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
from abplatform.service.routes import (
    create_route,
    get_route,
    get_route_spec,
    list_routes,
    price_rows,
    price_table,
    route_audit,
    route_report,
    update_route,
)

__all__ = [
    "DEFAULT_GUARDRAILS",
    "KEY_PATTERN",
    "NAME_PATTERN",
    "ArgumentSpec",
    "ConflictError",
    "ExperimentSpec",
    "ExperimentView",
    "InvalidInputError",
    "NamespaceSpec",
    "NotFoundError",
    "PhaseView",
    "RouteSpec",
    "RouteView",
    "RuleSpec",
    "ServiceError",
    "ShadowSpec",
    "StaleWriteError",
    "StepSpec",
    "VariantSpec",
    "VariantView",
    "WeightChangePreview",
    "as_dict",
    "audit_log",
    "create_experiment",
    "create_imported_experiment",
    "create_route",
    "get_experiment",
    "get_route",
    "get_route_spec",
    "list_experiments",
    "list_routes",
    "preview_weight_change",
    "price_rows",
    "price_table",
    "promote",
    "request_counts",
    "route_audit",
    "route_report",
    "set_weights",
    "start_experiment",
    "stop_experiment",
    "update_route",
    "validate_weights_percent",
]
