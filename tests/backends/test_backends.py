"""The model backends are real ``fal.App`` classes serving tiny diffusers pipelines.

Each app is served exactly as fal builds it on a runner (``App._build_app()``), under
FastAPI's ``TestClient`` (whose ``with`` block runs ``setup()``), on random-weight
pipelines built offline into a temporary folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from abplatform.local.pipelines import build_tiny_pipeline, ensure_tiny_pipelines
from abplatform.local.serve import build_asgi_app
from backends.model_v1 import ModelV1
from backends.model_v2 import ModelV2

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

APPS = {"v1": "backends.model_v1:ModelV1", "v2": "backends.model_v2:ModelV2"}
PNG_DATA_URI = "data:image/png;base64,"


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ensure_tiny_pipelines(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def clients(pipelines: dict[str, Path]) -> Iterator[dict[str, TestClient]]:
    """``{"v1": client, "v2": client}``: both apps started (``setup()`` has run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODEL_V1_WEIGHTS", str(pipelines["model-v1"]))
        mp.setenv("MODEL_V2_WEIGHTS", str(pipelines["model-v2"]))
        mp.setenv("ABPLATFORM_IMAGE_REPOSITORY", "in_memory")
        with (
            TestClient(build_asgi_app(APPS["v1"])) as v1,
            TestClient(build_asgi_app(APPS["v2"])) as v2,
        ):
            yield {"v1": v1, "v2": v2}


def generate(client: TestClient, **arguments: Any) -> dict[str, Any]:
    response = client.post("/", json={"prompt": "a red bicycle", **arguments})
    assert response.status_code == 200, response.text
    return response.json()


def png_bytes(output: dict[str, Any]) -> bytes:
    url = output["image"]["url"]
    assert url.startswith(PNG_DATA_URI)
    return base64.b64decode(url.removeprefix(PNG_DATA_URI))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_returns_a_png_data_uri_of_the_requested_size(
    clients: dict[str, TestClient], version: str
) -> None:
    out = generate(clients[version], width=96, height=64, num_inference_steps=2, seed=7)

    image = Image.open(io.BytesIO(png_bytes(out)))
    assert image.format == "PNG"
    assert image.size == (96, 64)
    assert (out["width"], out["height"]) == (96, 64)
    assert out["image"]["content_type"] == "image/png"
    assert (out["image"]["width"], out["image"]["height"]) == (96, 64)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_reports_its_model_version_seed_and_inference_time(
    clients: dict[str, TestClient], version: str
) -> None:
    out = generate(clients[version], seed=123, num_inference_steps=3)

    assert out["model_version"] == version
    assert out["seed"] == 123
    assert out["num_inference_steps"] == 3
    assert 0 < out["inference_ms"] < 60_000


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_same_seed_gives_the_same_image_and_another_seed_another(
    clients: dict[str, TestClient], version: str
) -> None:
    first = png_bytes(generate(clients[version], seed=42))
    again = png_bytes(generate(clients[version], seed=42))
    other = png_bytes(generate(clients[version], seed=43))

    assert first == again
    assert first != other


def test_an_omitted_seed_is_drawn_returned_and_reproducible(
    clients: dict[str, TestClient],
) -> None:
    out = generate(clients["v1"])

    assert 0 <= out["seed"] < 2**32
    assert png_bytes(generate(clients["v1"], seed=out["seed"])) == png_bytes(out)


def test_v1_and_v2_are_different_models(clients: dict[str, TestClient]) -> None:
    v1 = png_bytes(generate(clients["v1"], seed=5))
    v2 = png_bytes(generate(clients["v2"], seed=5))

    assert v1 != v2


def test_v2_is_clearly_slower_than_v1_on_cpu(clients: dict[str, TestClient]) -> None:
    # The minimum of several runs is robust to other load on the machine.
    def fastest(version: str) -> float:
        return min(generate(clients[version], seed=i)["inference_ms"] for i in range(5))

    assert fastest("v2") > 1.3 * fastest("v1")


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [
        ({"prompt": ""}, "prompt", "at least 1 character"),
        ({"prompt": "   "}, "prompt", "must not be blank"),
        ({}, "prompt", "Field required"),
        ({"prompt": "x", "width": 63}, "width", "multiple of 8"),
        ({"prompt": "x", "height": 2048}, "height", "less than or equal to 1024"),
        ({"prompt": "x", "width": 32}, "width", "greater than or equal to 64"),
        ({"prompt": "x", "num_inference_steps": 0}, "num_inference_steps", "greater than"),
        ({"prompt": "x", "num_inference_steps": 51}, "num_inference_steps", "less than"),
        ({"prompt": "x", "seed": -1}, "seed", "greater than or equal to 0"),
    ],
)
def test_invalid_input_is_rejected_with_422_naming_the_field(
    clients: dict[str, TestClient], arguments: dict[str, Any], field: str, message: str
) -> None:
    response = clients["v1"].post("/", json=arguments)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert message in error["msg"]


def test_health_answers_once_setup_has_run(clients: dict[str, TestClient]) -> None:
    assert clients["v1"].get("/health").status_code == 200
    assert clients["v2"].get("/health").status_code == 200


def test_cancel_of_a_request_not_in_flight_is_404(clients: dict[str, TestClient]) -> None:
    response = clients["v1"].post("/cancel", headers={"x-fal-request-id": "no-such-request"})

    assert response.status_code == 404


def test_apps_declare_their_fal_deployment_settings() -> None:
    assert (ModelV1.app_name, ModelV2.app_name) == ("model-v1", "model-v2")
    assert ModelV1.machine_type.startswith("GPU-")
    assert ModelV2.machine_type.startswith("GPU-")
    for app in (ModelV1, ModelV2):
        assert app.max_multiplexing == 1
        assert app.host_kwargs["keep_alive"] >= 60
        assert {"torch", "diffusers", "transformers", "accelerate"} <= {
            r.split("=")[0].split(">")[0] for r in app.requirements
        }
        assert sorted(app.get_endpoints()) == ["/", "/cancel"]


def test_tiny_pipeline_builds_are_deterministic_and_idempotent(
    tmp_path: Path, pipelines: dict[str, Path]
) -> None:
    def digest(folder: Path) -> dict[str, str]:
        return {
            str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*"))
            if f.is_file()
        }

    rebuilt = build_tiny_pipeline(tmp_path / "v1", variant="v1")
    assert digest(rebuilt) == digest(pipelines["model-v1"])

    state = pipelines["model-v1"].parent.parent
    before = pipelines["model-v1"].stat().st_mtime_ns
    assert ensure_tiny_pipelines(state) == pipelines
    assert pipelines["model-v1"].stat().st_mtime_ns == before


def test_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        build_tiny_pipeline(tmp_path / "v3", variant="v3")
