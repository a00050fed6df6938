"""Serve a ``fal.App`` (or any ASGI app) locally under uvicorn.

``build_asgi_app("backends.model_v1:ModelV1")`` returns the FastAPI app fal itself would
run on a runner (``App(_allow_init=True)._build_app()``: a private fal method, which is
why ``fal`` is pinned to 1.83.0). ``setup()`` runs in its lifespan, so it runs when
uvicorn starts (or when a ``with TestClient(app)`` block is entered).

Command line::

    python -m abplatform.local.serve backends.model_v1:ModelV1 --host 127.0.0.1 --port 8101
    python -m abplatform.local.serve abplatform.router:ABRouter --port 8200
    python -m abplatform.local.serve abplatform.local.gateway:queue_app_from_env \\
        --port 8443 --ssl-certfile cert.pem --ssl-keyfile key.pem

Unlike ``fal run --local``, this binds the given host (not 0.0.0.0), starts a metrics
server only when given a port (``--metrics-port``), so any number of apps can run side by
side, and installs no ``requirements``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

__all__ = ["build_asgi_app", "load_target", "main"]


def load_target(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises:
        ValueError: ``target`` is not of the form ``module:attribute``.
        ImportError / AttributeError: the module or attribute does not exist.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target must look like 'package.module:Name', got {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def build_asgi_app(target: str) -> FastAPI:
    """Build the ASGI app for ``target`` (``"module.path:Name"``).

    ``Name`` may be:

    * a ``fal.App`` subclass: its FastAPI app, exactly as fal builds it on a runner
      (``POST`` routes from ``@fal.endpoint``, ``GET /health``, fal's error handlers,
      ``setup()``/``teardown()`` in the lifespan);
    * a FastAPI instance: returned as is;
    * a zero-argument callable returning either of the above (an app factory).

    Raises:
        TypeError: ``Name`` is none of these.
    """
    import fal

    obj = load_target(target)
    if not isinstance(obj, FastAPI) and not inspect.isclass(obj) and callable(obj):
        obj = obj()
    if inspect.isclass(obj) and issubclass(obj, fal.App):
        return obj(_allow_init=True)._build_app()
    if isinstance(obj, FastAPI):
        return obj
    raise TypeError(
        f"{target!r} is {type(obj).__name__}: expected a fal.App subclass, a FastAPI app "
        "or a factory returning one"
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m abplatform.local.serve",
        description="Serve a fal.App class (or FastAPI app / factory) locally with uvicorn.",
    )
    parser.add_argument("target", help="module.path:Name, e.g. backends.model_v1:ModelV1")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port")
    parser.add_argument("--ssl-certfile", default=None, help="PEM certificate: serve HTTPS")
    parser.add_argument("--ssl-keyfile", default=None, help="PEM private key for HTTPS")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (info)")
    parser.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("ABPLATFORM_METRICS_PORT", "0")) or None,
        help="serve the Prometheus registry at /metrics on this port, as fal's metrics "
        "port does (default $ABPLATFORM_METRICS_PORT; none if unset)",
    )
    args = parser.parse_args(argv)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        parser.error("--ssl-certfile and --ssl-keyfile go together")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: build the app, then run uvicorn until SIGINT/SIGTERM.

    ``setup()`` runs before the port accepts requests; if it raises, the process exits
    with a non-zero status. On SIGTERM uvicorn drains requests and runs ``teardown()``.
    """
    import uvicorn

    args = _parse_args(argv)
    app = build_asgi_app(args.target)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.host)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
