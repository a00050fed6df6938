"""Tiny random-weight text-to-image pipelines, built offline for local serving and tests.

Each variant is a real ``diffusers.StableDiffusionPipeline`` (UNet, VAE, CLIP text encoder,
CLIP tokenizer, scheduler) with random weights, built from configs with no download and
saved with ``save_pretrained`` (v1 1.4 MB, v2 16 MB on disk). The backends load them with
``from_pretrained(folder)`` exactly as they load a hub model in production.

The two variants differ for real, so an A/B test between them has something to find:

======  ===============================  ======================  =========================
name    UNet ``block_out_channels``      scheduler               CPU latency, 64x64, 1 thread
======  ===============================  ======================  =========================
v1      (16, 32)                         DDIMScheduler           ~33 ms (2 steps), ~50 (4)
v2      (64, 128)                        EulerDiscreteScheduler  ~57 ms (2 steps), ~100 (4)
======  ===============================  ======================  =========================

Both share the VAE shape (3 blocks: latents are 1/4 of the image side) and the text encoder
shape; every module is initialised from a fixed torch seed, so a build is deterministic.
Images are noise: only their size, determinism and latency are meaningful.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PIPELINE_NAMES",
    "VARIANTS",
    "TinyPipelineSpec",
    "build_tiny_pipeline",
    "ensure_tiny_pipelines",
    "is_built",
]

#: File written last into a built pipeline folder; its content identifies the spec.
MARKER_FILE = "abplatform_tiny_pipeline.json"

#: Pipeline folder names under ``<state_dir>/pipelines`` and the variant each holds.
PIPELINE_NAMES: dict[str, str] = {"model-v1": "v1", "model-v2": "v2"}

# CLIP's special tokens; the vocabulary below puts them after the 512 byte tokens.
_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TinyPipelineSpec:
    """Shape of one tiny pipeline variant.

    Attributes:
        variant: "v1" or "v2".
        unet_channels: UNet ``block_out_channels`` (two blocks: down, cross-attention).
        scheduler: diffusers scheduler class name.
        seed: torch seed set before each module is initialised.
        vae_channels: VAE ``block_out_channels``; its length sets the latent downscale
            factor ``2 ** (len - 1)``.
        text_hidden_size: CLIP text encoder hidden size, also the UNet cross-attention size.
        max_tokens: tokenizer ``model_max_length`` and text ``max_position_embeddings``.
    """

    variant: str
    unet_channels: tuple[int, int]
    scheduler: str
    seed: int
    vae_channels: tuple[int, ...] = (8, 16, 16)
    text_hidden_size: int = 32
    max_tokens: int = 32

    def fingerprint(self) -> str:
        """A short hash of the spec: a pipeline folder is rebuilt when it changes."""
        payload = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


VARIANTS: dict[str, TinyPipelineSpec] = {
    "v1": TinyPipelineSpec(variant="v1", unet_channels=(16, 32), scheduler="DDIMScheduler", seed=1),
    "v2": TinyPipelineSpec(
        variant="v2", unet_channels=(64, 128), scheduler="EulerDiscreteScheduler", seed=2
    ),
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _byte_level_vocab() -> dict[str, int]:
    """A 514-entry CLIP vocabulary: every byte character, alone and as a word end
    (``"</w>"`` suffix), then the two special tokens. With no merges, any text tokenizes
    to one token per byte, so no vocabulary file has to be downloaded."""
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for ch in chars:
        vocab[ch] = len(vocab)
    for ch in chars:
        vocab[ch + "</w>"] = len(vocab)
    vocab[_BOS] = len(vocab)
    vocab[_EOS] = len(vocab)
    return vocab


def _make_pipeline(spec: TinyPipelineSpec) -> Any:
    """Construct (not save) the random-weight ``StableDiffusionPipeline`` for ``spec``."""
    # transformers warns at import that torchvision is absent; it is not needed here.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import diffusers
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _byte_level_vocab()
    tokenizer = CLIPTokenizer(
        vocab=vocab, merges=[], model_max_length=spec.max_tokens, bos_token=_BOS, eos_token=_EOS
    )

    torch.manual_seed(spec.seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            bos_token_id=vocab[_BOS],
            eos_token_id=vocab[_EOS],
            pad_token_id=vocab[_EOS],
            hidden_size=spec.text_hidden_size,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=spec.max_tokens,
            layer_norm_eps=1e-5,
        )
    )
    torch.manual_seed(spec.seed + 1000)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=spec.unet_channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=spec.text_hidden_size,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    torch.manual_seed(spec.seed + 2000)
    n_vae = len(spec.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=spec.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    if spec.scheduler == "DDIMScheduler":
        scheduler = diffusers.DDIMScheduler(steps_offset=1, clip_sample=False)
    elif spec.scheduler == "EulerDiscreteScheduler":
        scheduler = diffusers.EulerDiscreteScheduler(steps_offset=1)
    else:  # pragma: no cover - the specs above are the only callers
        raise ValueError(f"unsupported scheduler {spec.scheduler!r}")

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _quiet_progress_bars() -> None:
    """Turn off diffusers' and transformers' tqdm bars (they clutter logs and test output)."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def is_built(path: Path, *, variant: str) -> bool:
    """Whether ``path`` holds a complete pipeline built from the current ``variant`` spec.

    A folder left by an interrupted build, or built from an older spec, is not "built".
    """
    marker = Path(path) / MARKER_FILE
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (
        info.get("variant") == variant
        and info.get("fingerprint") == VARIANTS[variant].fingerprint()
        and (Path(path) / "model_index.json").is_file()
    )


def build_tiny_pipeline(dest: Path, *, variant: str) -> Path:
    """Build the tiny random-weight pipeline ``variant`` ("v1" or "v2") at ``dest``.

    The pipeline is saved into a temporary sibling folder and renamed to ``dest``, so
    ``dest`` either does not exist or is complete. An existing ``dest`` is replaced.
    Takes about 1 s on CPU; needs no network. Deterministic: the weights depend only on
    the variant's spec.

    Args:
        dest: folder to create (its parent is created if missing).
        variant: "v1" or "v2" (see ``VARIANTS``).

    Returns:
        ``dest``, loadable with ``DiffusionPipeline.from_pretrained(dest)``.

    Raises:
        ValueError: unknown ``variant``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    spec = VARIANTS[variant]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        pipeline = _make_pipeline(spec)
        _quiet_progress_bars()
        pipeline.save_pretrained(tmp, safe_serialization=True)
        marker = {"variant": variant, "fingerprint": spec.fingerprint(), "spec": asdict(spec)}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True))
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            dest.rename(old / dest.name)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def ensure_tiny_pipelines(state_dir: Path) -> dict[str, Path]:
    """Make sure both tiny pipelines exist under ``<state_dir>/pipelines``; build missing ones.

    Idempotent and cheap when they exist (a marker file is read per pipeline); a folder
    from an interrupted build or an older spec is rebuilt. Safe to call from several
    processes at once: each builds into its own temporary folder and the last rename wins.

    Args:
        state_dir: the state folder (created if missing).

    Returns:
        ``{"model-v1": <folder>, "model-v2": <folder>}``.
    """
    root = Path(state_dir) / "pipelines"
    paths: dict[str, Path] = {}
    for name, variant in PIPELINE_NAMES.items():
        path = root / name
        if not is_built(path, variant=variant):
            build_tiny_pipeline(path, variant=variant)
        paths[name] = path
    return paths
