"""Model v2: the candidate text-to-image backend.

Deploy: ``fal deploy backends/model_v2.py::ModelV2 --app-name model-v2``.
Weights: ``MODEL_V2_WEIGHTS`` (hub id or folder). See ``backends.common`` for the API.
"""

from __future__ import annotations

from backends.common import TextToImageApp


class ModelV2(TextToImageApp):
    """Text-to-image v2 on an H100: ``POST /`` takes ``TextToImageInput``, returns
    ``TextToImageOutput`` with ``model_version="v2"``."""

    app_name = "model-v2"
    model_version = "v2"
    weights_env_var = "MODEL_V2_WEIGHTS"
    default_weights = "stabilityai/stable-diffusion-2-1-base"
    machine_type = "GPU-H100"
