"""Shared logic of the text-to-image model backends (``ModelV1``, ``ModelV2``).

A backend is a ``fal.App`` that loads one diffusers text-to-image pipeline in ``setup()``
and serves ``POST /`` (``TextToImageInput`` -> ``TextToImageOutput``). The concrete apps
only set class attributes: which model version they are, which environment variable names
their weights, and the fal machine settings.

This module must stay importable on a fal runner: it imports only ``fal``, ``pydantic``
and the standard library at module level (torch and diffusers are imported in ``setup``),
and nothing from ``abplatform``. It knows nothing of the local stand-in for fal's cloud:
where the weights are and where images go come from environment variables.

Environment:
    ``<weights_env_var>`` (e.g. ``MODEL_V1_WEIGHTS``): a Hugging Face hub id or a local
        folder for ``DiffusionPipeline.from_pretrained``; default ``default_weights``.
    ``ABPLATFORM_IMAGE_REPOSITORY``: fal file repository for output images; default
        ``"fal_v3"`` (fal's CDN; ``"cdn"`` is a deprecated alias of it). ``"in_memory"``
        returns a ``data:image/png;base64,...`` URL and needs no network.
    ``ABPLATFORM_TORCH_THREADS``: torch intra-op threads; default 1 on CPU (unchanged on
        GPU).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from typing import Any, ClassVar

import fal
from fal.exceptions import RequestCancelledException
from fal.toolkit import Image
from fastapi import Header, HTTPException
from pydantic import BaseModel, Field, field_validator

__all__ = [
    "DEFAULT_IMAGE_REPOSITORY",
    "GPU_REQUIREMENTS",
    "TextToImageApp",
    "TextToImageInput",
    "TextToImageOutput",
]

log = logging.getLogger("backends")

#: fal file repository used when ``ABPLATFORM_IMAGE_REPOSITORY`` is unset.
DEFAULT_IMAGE_REPOSITORY = "fal_v3"
IMAGE_REPOSITORY_ENV = "ABPLATFORM_IMAGE_REPOSITORY"
TORCH_THREADS_ENV = "ABPLATFORM_TORCH_THREADS"

#: What a GPU runner installs: the versions tested locally. fal adds its own pins of
#: fastapi, pydantic and uvicorn. PyPI's Linux torch wheel is the CUDA build.
GPU_REQUIREMENTS: list[str] = [
    "torch==2.13.0",
    "diffusers==0.42.1",
    "transformers==5.24.0",
    "accelerate==1.15.0",
    "safetensors>=0.4",
    "pillow>=10",
]

MAX_SEED = 2**32 - 1


class TextToImageInput(BaseModel):
    """Arguments of ``POST /``. Invalid values are rejected with 422 before inference."""

    prompt: str = Field(
        min_length=1,
        max_length=2000,
        description="What to draw. Must not be blank.",
        examples=["a watercolor fox in the snow"],
    )
    width: int = Field(
        default=64, ge=64, le=1024, multiple_of=8, description="Image width in pixels."
    )
    height: int = Field(
        default=64, ge=64, le=1024, multiple_of=8, description="Image height in pixels."
    )
    num_inference_steps: int = Field(
        default=4, ge=1, le=50, description="Denoising steps: latency grows about linearly."
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Random seed; the same seed and arguments give the same image. "
        "Omitted: a random seed is drawn and returned.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value


class TextToImageOutput(BaseModel):
    """Result of ``POST /``."""

    image: Image = Field(description="The generated PNG image (URL, size, content type).")
    inference_ms: float = Field(
        description="Wall time of the diffusion pipeline call in milliseconds: excludes "
        "request parsing, waiting for the model lock, PNG encoding and upload."
    )
    model_version: str = Field(description='Model version label, e.g. "v1".')
    seed: int = Field(description="Seed actually used.")
    width: int = Field(description="Image width in pixels.")
    height: int = Field(description="Image height in pixels.")
    num_inference_steps: int = Field(description="Denoising steps run.")
    timings: dict[str, float] = Field(
        default_factory=dict,
        description="The backend's own time on this request in seconds, fal's convention: "
        "``inference`` (the pipeline) and ``encode`` (PNG encoding and upload); waiting "
        "for the model lock is not included.",
    )


class TextToImageApp(fal.App):
    """Base class of the model backends: one diffusers pipeline behind ``POST /``.

    Subclasses set ``model_version``, ``weights_env_var`` and ``default_weights`` (plus
    fal machine settings). One inference runs at a time per runner (a lock guards the
    pipeline, matching ``max_multiplexing = 1``); concurrent requests wait for it.

    Cancellation follows fal's protocol: when a caller cancels a running queue request,
    fal calls ``POST /cancel`` with the same ``x-fal-request-id``; the request then stops
    at its next denoising step (or before it starts) and answers 499. A router that gives
    up on a slow backend thus frees the GPU instead of finishing unwanted work.
    """

    #: Label returned as ``model_version`` ("v1", "v2").
    model_version: ClassVar[str] = "unset"
    #: Environment variable naming the weights (hub id or folder).
    weights_env_var: ClassVar[str] = "MODEL_WEIGHTS"
    #: Weights used when the environment variable is unset.
    default_weights: ClassVar[str] = ""
    #: Classifier-free guidance scale passed to the pipeline.
    guidance_scale: ClassVar[float] = 7.5

    requirements = GPU_REQUIREMENTS
    local_python_modules = ["backends"]
    max_multiplexing = 1
    keep_alive = 300
    startup_timeout = 900
    request_timeout = 300

    def setup(self) -> None:
        """Load the pipeline named by ``weights_env_var`` and run one warm-up step.

        Device: CUDA (float16) when available, else CPU (float32) with
        ``ABPLATFORM_TORCH_THREADS`` intra-op threads (default 1).

        Raises:
            RuntimeError: no weights configured.
            OSError: the weights cannot be found or loaded.
        """
        import importlib.util

        import diffusers.utils.logging
        import torch
        import transformers.utils.logging
        from diffusers import DiffusionPipeline

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.weights = os.environ.get(self.weights_env_var) or self.default_weights
        if not self.weights:
            raise RuntimeError(f"no weights configured: set {self.weights_env_var}")
        self.image_repository = os.environ.get(IMAGE_REPOSITORY_ENV) or DEFAULT_IMAGE_REPOSITORY

        if torch.cuda.is_available():
            self.device = "cuda"
            dtype = torch.float16
            threads = os.environ.get(TORCH_THREADS_ENV)
        else:
            self.device = "cpu"
            dtype = torch.float32
            threads = os.environ.get(TORCH_THREADS_ENV) or "1"
        if threads:
            torch.set_num_threads(int(threads))

        started = time.perf_counter()
        # Without accelerate (as locally) ask for the plain loader: diffusers would warn.
        low_mem = importlib.util.find_spec("accelerate") is not None
        pipe = DiffusionPipeline.from_pretrained(
            self.weights, dtype=dtype, low_cpu_mem_usage=low_mem
        )
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe: Any = pipe
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._cancelled: set[str] = set()
        self._generate_image(prompt="warm-up", width=64, height=64, steps=1, seed=0)
        log.info(
            "model %s loaded from %s on %s in %.1f s",
            self.model_version,
            self.weights,
            self.device,
            time.perf_counter() - started,
        )

    def _check_cancelled(self, request_id: str | None) -> None:
        if request_id is not None and request_id in self._cancelled:
            raise RequestCancelledException("Request cancelled by the client.")

    def _generate_image(
        self,
        *,
        prompt: str,
        width: int,
        height: int,
        steps: int,
        seed: int,
        request_id: str | None = None,
    ) -> tuple[Any, float]:
        """Run the pipeline under the model lock; return (PIL image, pipeline ms).

        Raises:
            RequestCancelledException: ``request_id`` was cancelled (checked before the
                run and after every denoising step).
        """
        import torch

        def on_step_end(
            pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            self._check_cancelled(request_id)
            return kwargs

        # A CPU generator gives the same initial noise on every device.
        generator = torch.Generator(device="cpu").manual_seed(seed)
        with self._lock, torch.inference_mode():
            self._check_cancelled(request_id)
            started = time.perf_counter()
            result = self.pipe(
                prompt=prompt,
                width=width,
                height=height,
                num_inference_steps=steps,
                guidance_scale=self.guidance_scale,
                generator=generator,
                callback_on_step_end=on_step_end if request_id is not None else None,
            )
            elapsed_ms = (time.perf_counter() - started) * 1000.0
        return result.images[0], elapsed_ms

    @fal.endpoint("/")
    def generate(
        self,
        input: TextToImageInput,
        x_fal_request_id: str | None = Header(default=None, include_in_schema=False),
    ) -> TextToImageOutput:
        """Generate one image for ``input``; see ``TextToImageOutput`` for the fields.

        Answers 422 for invalid input, 499 if cancelled (see ``cancel``).
        """
        seed = input.seed if input.seed is not None else secrets.randbelow(MAX_SEED + 1)
        request_id = x_fal_request_id
        if request_id is not None:
            self._in_flight.add(request_id)
        try:
            pil_image, inference_ms = self._generate_image(
                prompt=input.prompt,
                width=input.width,
                height=input.height,
                steps=input.num_inference_steps,
                seed=seed,
                request_id=request_id,
            )
        finally:
            if request_id is not None:
                self._in_flight.discard(request_id)
                self._cancelled.discard(request_id)
        encoding = time.perf_counter()
        image = Image.from_pil(pil_image, format="png", repository=self.image_repository)
        encode_s = time.perf_counter() - encoding
        return TextToImageOutput(
            image=image,
            inference_ms=inference_ms,
            model_version=self.model_version,
            seed=seed,
            width=pil_image.width,
            height=pil_image.height,
            num_inference_steps=input.num_inference_steps,
            timings={"inference": inference_ms / 1000.0, "encode": encode_s},
        )

    @fal.endpoint("/cancel")
    def cancel(
        self, x_fal_request_id: str | None = Header(default=None, include_in_schema=False)
    ) -> dict[str, str]:
        """Cancel the in-flight ``POST /`` with this ``x-fal-request-id`` (fal calls this
        when a caller cancels a running request).

        Raises:
            HTTPException: 404 when no request with that id is in flight.
        """
        if x_fal_request_id is None or x_fal_request_id not in self._in_flight:
            raise HTTPException(404, f"no request {x_fal_request_id!r} in flight")
        self._cancelled.add(x_fal_request_id)
        return {"status": "CANCELLATION_REQUESTED"}
