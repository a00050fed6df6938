"""A property-based fuzz of the router's OpenAPI (hypothesis): bodies built from the
schema's fields with arbitrary JSON values, plus arbitrary bytes, against the real router
process of the local stack. Whatever arrives, the router answers, and never with a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abplatform import service
from abplatform.core.specs import ExperimentSpec, VariantSpec
from abplatform.local.echo import DELAY_ENV
from abplatform.local.falcloud import BackendSpec
from abplatform.local.stack import LocalStack
from tests.helpers import fresh_database, settings_env

ECHO = "abplatform/echo"
EXAMPLES = 150

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_url: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The router's URL and its OpenAPI document; experiment "fz" runs on an echo backend."""
    url = fresh_database(pg_server_url, "router_fuzz")
    backends = {ECHO: BackendSpec(target="abplatform.local.echo:EchoBackend", concurrency=64,
                                  env={DELAY_ENV: "1"})}  # fmt: skip
    home = Path(tmp_path_factory.mktemp("fuzz"))
    env = {"ABPLATFORM_BACKEND_APPS": ECHO}
    with (
        settings_env(env),
        LocalStack(home, database_url=url, backends=backends, extra_router_env=env) as stack,
    ):
        assert stack.db is not None
        variants = [VariantSpec(key="control", model_version="a", backend_app_id=ECHO,
                                is_control=True),
                    VariantSpec(key="t", model_version="b", backend_app_id=ECHO,
                                call_mode="queue")]  # fmt: skip
        with stack.db.sessions() as s:
            service.create_experiment(s, ExperimentSpec(name="fz", variants=variants),
                                      actor="test")  # fmt: skip
            service.start_experiment(s, "fz", actor="test")
        schema = httpx.get(f"{stack.router_url}/openapi.json", timeout=30).json()
        yield stack.router_url, schema


def body_for(schema: dict[str, Any], model: str) -> st.SearchStrategy[Any]:
    """Objects whose keys are mostly the model's fields, with arbitrary JSON values (and
    valid-looking ones often enough to get past validation)."""
    props = schema["components"]["schemas"][model]["properties"]
    plausible = {
        "experiment": st.sampled_from(["fz", "no-such", ""]) | st.text(max_size=12),
        "unit_id": st.text(min_size=1, max_size=20),
        "arguments": st.dictionaries(
            st.sampled_from(["payload", "x", "delay_ms"]), json_values, max_size=3
        ).map(lambda d: {**d, "delay_ms": 1} if "delay_ms" in d else d),
        "path": st.sampled_from(["", "x", "a/b", "../up"]),
        "metric": st.sampled_from(["thumbs_up", "bad metric", ""]),
        "value": st.floats(allow_nan=False, allow_infinity=False) | json_values,
        "request_id": st.text(max_size=40) | st.just("f" * 32),
    }
    fields = {k: st.one_of(plausible.get(k, json_values), json_values) for k in props}
    return st.fixed_dictionaries({}, optional=fields) | json_values


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_input_makes_the_router_answer_5xx(
    router: tuple[str, dict[str, Any]], data: Any
) -> None:
    url, schema = router
    endpoint, model = data.draw(st.sampled_from([("/", "RouteRequest"),
                                                 ("/feedback", "FeedbackRequest")]))  # fmt: skip
    if data.draw(st.booleans()):
        content = json.dumps(data.draw(body_for(schema, model))).encode()
    else:
        content = data.draw(st.binary(max_size=200))
    r = httpx.post(url + endpoint, content=content, timeout=60,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code < 500, (endpoint, content[:300], r.status_code, r.text[:500])
    assert len(r.content) < 20_000
