"""A local stand-in for fal's cloud, so unmodified ``fal_client`` calls reach local apps.

* ``serve``: serve a ``fal.App`` class (or any FastAPI app) under uvicorn.
* ``queue``: fal's queue and run gateways (submit / status / result / cancel / run).
* ``tls``: a self-signed certificate for 127.0.0.1, ::1 and localhost.
* ``stack``: ``LocalFal``, which starts the model backends and the gateway as
  subprocesses and gives the environment a fal_client process needs.

None of this is used in production: the backends and the router never import it.
"""
