"""Create experiment: a form for name, variants, split, coverage, metrics and seed.

Validation is the service's (:class:`abplatform.service.experiments.ExperimentSpec` and
:func:`abplatform.service.experiments.create_experiment`): a broken rule shows inline next to the
field it concerns, and nothing is saved. On success the new experiment opens.
"""

from __future__ import annotations

import streamlit as st
from pydantic import ValidationError

from abplatform import service
from abplatform.core.metrics import BUILTIN_METRICS
from abplatform.service import rollouts
from abplatform.settings import get_settings
from dashboard import access, context, nav
from dashboard.views import rollout

ERRORS_KEY = "_create_errors"
MAX_VARIANTS = 8
NAME_TEXT = (
    "the name must be 1–100 characters: lowercase letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
)
KEY_TEXT = (
    "the key must be 1–64 characters: lowercase letters, digits, '_' or '-', starting "
    "with a letter or digit"
)
FRIENDLY = {
    ("name", "string_pattern_mismatch"): NAME_TEXT,
    ("name", "value_error"): NAME_TEXT,
    ("key", "string_pattern_mismatch"): KEY_TEXT,
    ("key", "value_error"): KEY_TEXT,
    ("model_version", "string_too_short"): "the model_version label is required",
    ("backend_app_id", "string_too_short"): "the backend app id is required",
    ("primary_metric", "string_too_short"): "the primary metric is required",
}


def default_weights(n: int) -> list[int]:
    """An equal split of 100 into ``n`` whole percents (the first ones get the rest)."""
    base, extra = divmod(100, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """Pydantic errors by form field (``name``, ``variant-<i>``, ``weights``...)."""
    out: dict[str, list[str]] = {}
    for e in exc.errors():
        loc = e.get("loc", ())
        kind = str(e.get("type"))
        if loc and loc[0] == "variants" and len(loc) >= 3:
            i, field = int(loc[1]), str(loc[2])
            text = FRIENDLY.get((field, kind), f"{field}: {e.get('msg')}")
            out.setdefault(f"variant-{i}", []).append(f"variant #{i + 1}: {text}")
            continue
        field = str(loc[0]) if loc else "form"
        out.setdefault(field, []).append(FRIENDLY.get((field, kind), f"{field}: {e.get('msg')}"))
    return out


def _service_field(message: str) -> str:
    """The form field a service validation message concerns."""
    text = message.lower()
    if "already exists" in text or "experiment name" in text:
        return "name"
    if "control" in text:
        return "control"
    if "weight" in text:
        return "weights"
    if "coverage" in text:
        return "coverage"
    if "variant" in text or "backend app" in text:
        return "variants"
    return "form"


def _spec_fields(n: int) -> dict:
    ss = st.session_state
    return {
        "name": str(ss.get("create_name", "")).strip(),
        "description": str(ss.get("create_description", "")),
        "variants": [
            {
                "key": str(ss.get(f"create_key_{i}", "")).strip(),
                "model_version": str(ss.get(f"create_model_{i}", "")).strip(),
                "backend_app_id": str(ss.get(f"create_app_{i}") or ""),
                "is_control": bool(ss.get(f"create_control_{i}", False)),
            }
            for i in range(n)
        ],
        "weights": [float(ss.get(f"create_weight_{i}", 0.0)) for i in range(n)],
        "coverage": float(ss.get("create_coverage", 100.0)),
        "primary_metric": str(ss.get("create_primary_metric", "")).strip(),
        "guardrails": list(ss.get("create_guardrails", [])),
        "hash_seed": str(ss.get("create_seed", "")).strip() or None,
        "fallback_to_control": bool(ss.get("create_fallback", False)),
    }


def _reset_form() -> None:
    for key in [k for k in st.session_state if str(k).startswith("create_")]:
        del st.session_state[key]


def _reset_weights() -> None:
    for key in [k for k in st.session_state if str(k).startswith("create_weight_")]:
        del st.session_state[key]


def _submit() -> None:
    """Validate and create; on any error keep the form and record the errors inline."""
    st.session_state.pop(ERRORS_KEY, None)
    try:
        actor = access.require_operator()
    except PermissionError as exc:
        st.session_state[ERRORS_KEY] = {"form": [str(exc)]}
        return
    n = int(st.session_state.get("create_n_variants", 2))
    start = bool(st.session_state.get("create_start", True))
    try:
        spec = service.ExperimentSpec(**_spec_fields(n))
    except ValidationError as exc:
        st.session_state[ERRORS_KEY] = _field_errors(exc)
        return
    try:
        plan = rollout.plan_from_form(spec.fallback_to_control)
        if plan is not None and len(spec.variants) != 2:
            raise service.InvalidInputError(
                f"a rollout ramps one treatment against the control: give 2 variants, not "
                f"{len(spec.variants)}"
            )
    except service.ServiceError as exc:
        st.session_state[ERRORS_KEY] = {"rollout": [str(exc)]}
        return
    try:
        with context.session() as session:
            view = service.create_experiment(session, spec, actor=actor)
            if plan is not None:
                rollouts.create_rollout(session, spec.name, plan, actor=actor)
                view = service.get_experiment(session, spec.name)
            elif start:
                view = service.start_experiment(
                    session, spec.name, actor=actor, expected_version=view.version
                )
    except service.ServiceError as exc:
        st.session_state[ERRORS_KEY] = {_service_field(str(exc)): [str(exc)]}
        return
    _reset_form()
    context.flash(
        "success",
        f"Created experiment **{view.name}** ({view.status}, seed `{view.hash_seed}`).",
    )
    nav.go("experiment", view.name)


def _errors(errors: dict[str, list[str]], *fields: str) -> None:
    for field in fields:
        for message in errors.get(field, []):
            st.error(message)


def _variant_row(i: int, apps: list[str], weight: float) -> None:
    """Inputs of variant ``i``: key, model version, backend app, control, weight."""
    c_key, c_model, c_app, c_control, c_weight = st.columns([2, 2, 3, 1.2, 1.5])
    c_key.text_input(
        "Key", value="control" if i == 0 else ("treatment" if i == 1 else f"treatment-{i}"),
        key=f"create_key_{i}",
    )  # fmt: skip
    c_model.text_input("model_version", value=f"v{i + 1}", key=f"create_model_{i}")
    c_app.selectbox("Backend app id", apps, index=min(i, len(apps) - 1), key=f"create_app_{i}")
    c_control.checkbox("Control", value=i == 0, key=f"create_control_{i}")
    c_weight.number_input(
        "Weight %",
        min_value=0.0,
        max_value=100.0,
        value=float(weight),
        step=1.0,
        key=f"create_weight_{i}",
    )


def _settings_fields(errors: dict[str, list[str]]) -> None:
    """Coverage, metrics, seed, fallback and start inputs, with their errors."""
    left, right = st.columns(2)
    left.number_input(
        "Coverage % (share of units enrolled)",
        min_value=0.0,
        max_value=100.0,
        value=100.0,
        step=5.0,
        key="create_coverage",
    )
    right.text_input(
        "Primary metric",
        value="error_rate",
        key="create_primary_metric",
        help="A built-in metric (" + ", ".join(BUILTIN_METRICS) + ") or a feedback "
        "metric name, e.g. thumbs_up.",
    )
    with left:
        _errors(errors, "coverage")
    with right:
        _errors(errors, "primary_metric")
    st.multiselect(
        "Guardrails",
        list(BUILTIN_METRICS),
        default=list(service.DEFAULT_GUARDRAILS),
        key="create_guardrails",
    )
    _errors(errors, "guardrails")
    st.text_input(
        "Hash seed",
        key="create_seed",
        placeholder="random",
        help="Leave blank for a random seed (recommended).",
    )
    _errors(errors, "hash_seed")
    st.checkbox("Fall back to the control when a variant's backend fails", key="create_fallback")
    st.checkbox("Start right away (the router serves it at once)", value=True, key="create_start")


def render() -> None:
    """Draw the create-experiment page (operators only)."""
    st.title("Create experiment")
    if not access.is_operator():
        st.info("Read-only: log in as an operator (sidebar) to create experiments.")
        return
    errors: dict[str, list[str]] = st.session_state.get(ERRORS_KEY, {})
    if errors:
        st.error("Nothing was saved: fix the problems marked below.")
    apps = list(get_settings().known_backend_apps)
    n = int(
        st.number_input(
            "Number of variants",
            min_value=2,
            max_value=MAX_VARIANTS,
            value=2,
            step=1,
            key="create_n_variants",
            on_change=_reset_weights,
        )
    )
    weights = default_weights(n)
    with st.form("create_form", border=True):
        _errors(errors, "form")
        st.text_input("Name", key="create_name", placeholder="img-v2", max_chars=100)
        _errors(errors, "name")
        st.text_area("Description", key="create_description", height=68)
        st.markdown("**Variants** — exactly one is the control; weights in percent sum to 100.")
        for i in range(n):
            _variant_row(i, apps, weights[i])
            _errors(errors, f"variant-{i}")
        _errors(errors, "variants", "control", "weights")
        _settings_fields(errors)
        st.markdown("**Safe rollout** (optional) — the controller ramps the treatment and "
                    "starts the experiment; defaults fit model serving.")  # fmt: skip
        rollout.form_fields()
        _errors(errors, "rollout")
        st.form_submit_button(
            "Create experiment", key="create_submit", on_click=_submit, type="primary"
        )
