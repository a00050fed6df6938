"""Unmodified fal_client reaches the local backends through the local stand-in of fal.

``LocalFal`` runs both backends and the HTTPS queue/run gateway as real subprocesses. The
client code runs in a subprocess too, with ``client_env()`` in its environment, because
fal_client reads its hosts when it is imported. Each client script prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from abplatform.local.falcloud import LocalFal
from abplatform.local.gateway import QUEUE_CONFIG_ENV, create_queue_app
from abplatform.local.processes import free_port, start_service
from abplatform.local.tls import ensure_local_certificate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

V1, V2 = "abplatform/model-v1", "abplatform/model-v2"

PRELUDE = """
import asyncio, json, time
import fal_client
from fal_client.client import FalClientHTTPError

client = fal_client.SyncClient()
ARGS = {"prompt": "a lighthouse at dusk", "seed": 11}

def http_error(call):
    try:
        call()
    except FalClientHTTPError as exc:
        return {"status": exc.status_code, "message": str(exc)}
    return None
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFal]:
    with LocalFal(tmp_path_factory.mktemp("localfal")) as running:
        yield running


def run_client(stack: LocalFal, body: str) -> Any:
    """Run PRELUDE + ``body`` with fal_client pointed at the stack; return its JSON output."""
    code = PRELUDE + textwrap.dedent(body)
    env = {**os.environ, **stack.client_env()}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_client_env_points_fal_client_at_the_local_gateway(stack: LocalFal) -> None:
    env = stack.client_env()

    assert env["FAL_RUN_HOST"] == f"127.0.0.1:{stack.queue_port}"
    assert env["FAL_QUEUE_RUN_HOST"] == f"127.0.0.1:{stack.queue_port}/queue"
    assert stack.certificate is not None
    assert stack.certificate.cert_path.read_text() in Path(env["SSL_CERT_FILE"]).read_text()
    assert env["FAL_KEY"]


def test_subscribe_returns_the_named_backends_result(stack: LocalFal) -> None:
    out = run_client(
        stack,
        f"""
        v1 = client.subscribe("{V1}", ARGS, client_timeout=30)
        v2 = client.subscribe("{V2}", ARGS, client_timeout=30)
        print(json.dumps([v1, v2]))
        """,
    )

    assert [r["model_version"] for r in out] == ["v1", "v2"]
    assert all(r["image"]["url"].startswith("data:image/png;base64,") for r in out)
    assert all(r["seed"] == 11 and r["inference_ms"] > 0 for r in out)


def test_submit_then_status_then_result(stack: LocalFal) -> None:
    out = run_client(
        stack,
        f"""
        handle = client.submit("{V2}", ARGS)
        first = type(handle.status()).__name__
        result = handle.get()
        final = client.status("{V2}", handle.request_id, with_logs=True)
        again = client.result("{V2}", handle.request_id)
        print(json.dumps({{"first": first, "result": result, "final": type(final).__name__,
                          "logs": final.logs, "metrics": final.metrics, "again": again}}))
        """,
    )

    assert out["first"] in {"Queued", "InProgress", "Completed"}
    assert out["result"]["model_version"] == "v2"
    assert out["final"] == "Completed"
    assert out["logs"] == []
    assert out["metrics"]["inference_time"] > 0
    assert out["again"] == out["result"]


def test_run_calls_the_app_directly(stack: LocalFal) -> None:
    out = run_client(stack, f'print(json.dumps(client.run("{V1}", ARGS)))')

    assert out["model_version"] == "v1"


def test_async_client_serves_concurrent_requests_to_both_backends(stack: LocalFal) -> None:
    out = run_client(
        stack,
        f"""
        async def main():
            aclient = fal_client.AsyncClient()
            apps = ["{V1}", "{V2}"] * 3
            calls = [aclient.subscribe(a, ARGS, client_timeout=30) for a in apps]
            return [r["model_version"] for r in await asyncio.gather(*calls)]
        print(json.dumps(asyncio.run(main())))
        """,
    )

    assert out == ["v1", "v2"] * 3


def test_unknown_app_id_is_404_listing_the_known_ones(stack: LocalFal) -> None:
    out = run_client(
        stack,
        """
        print(json.dumps({
            "subscribe": http_error(lambda: client.subscribe("nobody/nothing", ARGS)),
            "run": http_error(lambda: client.run("nobody/nothing", ARGS)),
        }))
        """,
    )

    for error in out.values():
        assert error["status"] == 404
        assert V1 in error["message"] and V2 in error["message"]


def test_invalid_arguments_surface_as_the_backends_422(stack: LocalFal) -> None:
    out = run_client(
        stack,
        f"""
        bad = {{"prompt": "x", "width": 63}}
        print(json.dumps({{
            "subscribe": http_error(lambda: client.subscribe("{V1}", bad, client_timeout=30)),
            "run": http_error(lambda: client.run("{V2}", {{"prompt": ""}})),
        }}))
        """,
    )

    assert out["subscribe"]["status"] == 422
    assert "multiple of 8" in out["subscribe"]["message"]
    assert out["run"]["status"] == 422
    assert "prompt" in out["run"]["message"]


def test_cancel_removes_a_queued_request_and_stops_a_running_one(stack: LocalFal) -> None:
    # One runner per backend: while a slow request runs, the next ones wait in line.
    out = run_client(
        stack,
        f"""
        slow = {{"prompt": "slow", "num_inference_steps": 50}}
        running = client.submit("{V2}", slow)
        queued = [client.submit("{V2}", ARGS) for _ in range(2)]
        while type(running.status()).__name__ != "InProgress":
            time.sleep(0.01)
        positions = [queued[0].status().position, queued[1].status().position]
        client.cancel("{V2}", queued[1].request_id)
        cancelled_queued = http_error(queued[1].get)
        running.cancel()
        cancelled_running = http_error(running.get)
        survivor = queued[0].get()["model_version"]
        print(json.dumps({{
            "positions": positions, "cancelled_queued": cancelled_queued,
            "cancelled_running": cancelled_running, "survivor": survivor,
            "cancel_completed": http_error(queued[0].cancel),
            "cancel_unknown": http_error(lambda: client.cancel("{V2}", "no-such-id")),
        }}))
        """,
    )

    assert out["positions"] == [0, 1]
    assert out["cancelled_queued"]["status"] == 499
    assert out["cancelled_running"]["status"] == 499  # stopped mid-way: no image
    assert out["survivor"] == "v2"
    assert out["cancel_completed"]["status"] == 400
    assert out["cancel_unknown"]["status"] == 404


def test_results_are_dropped_after_they_are_fetched(stack: LocalFal) -> None:
    # The gateway in-process, routed to the running v1 backend, keeping fetched results 0 s.
    app = create_queue_app({V1: stack.backend_urls[V1]}, fetched_ttl_s=0.0)
    with TestClient(app, base_url="https://testserver") as gateway:

        def submit() -> str:
            response = gateway.post(f"/queue/{V1}", json={"prompt": "x", "seed": 1})
            assert response.status_code == 200
            assert response.json()["status_url"].startswith("https://testserver/queue/")
            return str(response.json()["request_id"])

        def wait(request_id: str) -> None:
            for _ in range(300):
                status = gateway.get(f"/queue/{V1}/requests/{request_id}/status")
                if status.json()["status"] == "COMPLETED":
                    return
                time.sleep(0.05)
            raise AssertionError("request did not complete")

        first = submit()
        wait(first)
        result = gateway.get(f"/queue/{V1}/requests/{first}")
        assert result.status_code == 200
        assert result.json()["model_version"] == "v1"
        assert result.headers["x-fal-request-id"] == first

        wait(submit())  # any later activity sweeps the fetched result away
        assert gateway.get(f"/queue/{V1}/requests/{first}").status_code == 404
        assert len(app.state.queue) == 1


def test_start_service_serves_an_app_factory_over_https_and_stops_it(tmp_path: Path) -> None:
    certificate = ensure_local_certificate(tmp_path / "tls")
    env = {QUEUE_CONFIG_ENV: json.dumps({"routes": {V1: "http://127.0.0.1:9"}})}
    service = start_service(
        "abplatform.local.gateway:queue_app_from_env",
        free_port(),
        env,
        certificate=certificate,
        log_path=tmp_path / "queue.log",
    )
    with service:
        assert service.url.startswith("https://127.0.0.1:")
        assert service.is_running()
    assert not service.is_running()
    assert "Application shutdown complete" in service.log_tail()  # graceful, not killed
    assert ensure_local_certificate(tmp_path / "tls") == certificate  # reused, not remade


def test_a_service_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="ModuleNotFoundError"):
        start_service("backends.no_such_module:App", free_port(), log_path=tmp_path / "broken.log")
