"""Model v1: the control text-to-image backend.

Deploy: ``fal deploy backends/model_v1.py::ModelV1 --app-name model-v1``.
Weights: ``MODEL_V1_WEIGHTS`` (hub id or folder). See ``backends.common`` for the API.
"""

from __future__ import annotations

from backends.common import TextToImageApp


class ModelV1(TextToImageApp):
    """Text-to-image v1 on an A100: ``POST /`` takes ``TextToImageInput``, returns
    ``TextToImageOutput`` with ``model_version="v1"``."""

    app_name = "model-v1"
    model_version = "v1"
    weights_env_var = "MODEL_V1_WEIGHTS"
    default_weights = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    machine_type = "GPU-A100"
