"""Image tools for the later steps of a pipeline variant: upscale, remove the background.

fal's multi-app guide chains generate → upscale → remove background. These two
``fal.App``s are small stand-ins for such steps (fal-ai's ESRGAN or a background-removal
model in production): Pillow only, no weights, so they run anywhere, and they take and
return images the way our generators do (``image_url`` in, ``image`` out).

Deploy::

    fal deploy backends/image_tools.py::Upscale --app-name upscale
    fal deploy backends/image_tools.py::RemoveBackground --app-name remove-background

``POST /`` of each takes ``{"image_url": "data:image/png;base64,..." | "https://...", ...}``
and answers ``{"image": {"url", "width", "height", "content_type"}, "timings":
{"inference": seconds}}`` (fal's convention for the backend's own timing). An image that
cannot be read gives 422.
"""

from __future__ import annotations

import base64
import io
import os
import time
import urllib.request
from typing import Any, ClassVar

import fal
from fal.exceptions import FieldException
from fal.toolkit import Image
from pydantic import BaseModel, Field

IMAGE_REPOSITORY_ENV = "ABPLATFORM_IMAGE_REPOSITORY"
MAX_IMAGE_BYTES = 20 * 1024 * 1024


class UpscaleInput(BaseModel):
    """Arguments of ``Upscale``'s ``POST /``."""

    image_url: str = Field(min_length=10, description="Image to upscale (data: or https: URL).")
    scale: int = Field(default=2, ge=2, le=4, description="Factor of each side.")


class RemoveBackgroundInput(BaseModel):
    """Arguments of ``RemoveBackground``'s ``POST /``."""

    image_url: str = Field(min_length=10, description="Image (data: or https: URL).")
    tolerance: int = Field(
        default=32, ge=0, le=255, description="How far (0-255 per channel) a pixel may be "
        "from the corners' colour to count as background."
    )  # fmt: skip


def load_image(url: str) -> Any:
    """The PIL image at ``url`` (a ``data:`` URL, or an https URL).

    Raises:
        FieldException: it cannot be read or is not an image (answered as 422).
    """
    from PIL import Image as PILImage

    try:
        if url.startswith("data:"):
            data = base64.b64decode(url.split(",", 1)[1], validate=False)
        elif url.startswith("https://"):
            with urllib.request.urlopen(url, timeout=30) as resp:  # https only
                data = resp.read(MAX_IMAGE_BYTES + 1)
        else:
            raise ValueError("use a data: or https: URL")
        if len(data) > MAX_IMAGE_BYTES:
            raise ValueError(f"larger than {MAX_IMAGE_BYTES} bytes")
        image = PILImage.open(io.BytesIO(data))
        image.load()
        return image
    except Exception as exc:
        raise FieldException("image_url", f"cannot read the image: {exc}") from None


class _ImageTool(fal.App):
    """Shared settings and output of the image tools."""

    requirements: ClassVar[list[str]] = ["pillow>=10"]
    machine_type = "GPU-A100"
    max_multiplexing = 4
    keep_alive = 300

    def setup(self) -> None:
        """Where output images go (``ABPLATFORM_IMAGE_REPOSITORY``; fal's CDN by default)."""
        self.repository = os.environ.get(IMAGE_REPOSITORY_ENV) or "fal_v3"

    def answer(self, image: Any, started: float) -> dict[str, Any]:
        """The output: the image (uploaded) and the backend's own timing."""
        out = Image.from_pil(image, format="png", repository=self.repository)
        return {
            "image": {"url": out.url, "width": image.width, "height": image.height,
                      "content_type": "image/png"},
            "timings": {"inference": time.perf_counter() - started},
        }  # fmt: skip


class Upscale(_ImageTool):
    """Upscales an image ``scale`` times per side (Lanczos)."""

    app_name = "upscale"

    @fal.endpoint("/")
    def upscale(self, inp: UpscaleInput) -> dict[str, Any]:
        """The image ``scale`` times larger."""
        from PIL import Image as PILImage

        started = time.perf_counter()
        image = load_image(inp.image_url)
        size = (image.width * inp.scale, image.height * inp.scale)
        return self.answer(image.resize(size, PILImage.Resampling.LANCZOS), started)


class RemoveBackground(_ImageTool):
    """Makes the background transparent: pixels close to the corners' mean colour."""

    app_name = "remove-background"

    @fal.endpoint("/")
    def remove_background(self, inp: RemoveBackgroundInput) -> dict[str, Any]:
        """The image as RGBA with its background transparent."""
        started = time.perf_counter()
        image = load_image(inp.image_url).convert("RGBA")
        w, h = image.size
        corners = [image.getpixel(p) for p in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
        bg = [sum(c[i] for c in corners) / 4 for i in range(3)]
        tol = inp.tolerance
        pixels = [
            (r, g, b, 0 if all(abs(v - m) <= tol for v, m in zip((r, g, b), bg, strict=True))
             else a)
            for r, g, b, a in image.getdata()
        ]  # fmt: skip
        image.putdata(pixels)
        return self.answer(image, started)


__all__ = ["RemoveBackground", "RemoveBackgroundInput", "Upscale", "UpscaleInput", "load_image"]
