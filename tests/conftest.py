"""Shared fixtures. Tests never touch the network: the Hub is switched off before anything imports huggingface_hub.

``tiny_clip_dir`` is a randomly initialised CLIP in the standard Hugging Face format (config + safetensors, a
byte-level CLIP tokenizer, a CLIP image processor), small enough to build in well under a second, so that every
test can go through the same ``from_pretrained`` path as the real model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Set before any test module imports transformers / datasets / huggingface_hub: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

TINY_IMAGE_SIZE = 32
TINY_MAX_TOKENS = 24  # small on purpose: long prompts hit the limit quickly


def build_tiny_clip(folder: Path, *, image_size: int = TINY_IMAGE_SIZE, seed: int = 0) -> Path:
    """Write a tiny random CLIPModel + CLIPTokenizer + PIL CLIP image processor to ``folder``."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    # Byte-level vocabulary with no merges: every byte is a token, so any text (any script) tokenises.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)}
    vocab.update({char + "</w>": len(alphabet) + i for i, char in enumerate(alphabet)})
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": TINY_MAX_TOKENS,
            # The text tower pools at the first eos token: these must be the tokenizer's ids.
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={
            "image_size": image_size,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    folder.mkdir(parents=True, exist_ok=True)
    CLIPModel(config).eval().save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_MAX_TOKENS).save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random CLIP in Hugging Face format (see the module docstring)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_embedder(tiny_clip_dir: Path):
    """The tiny CLIP loaded once per session through ``trainer.embed.load``."""
    from trainer import embed

    return embed.load(str(tiny_clip_dir))


GOOD_FILES = ["gray.jpg", "palette.png", "layers/rgba.png", "deep/sixteen.png"]
BAD_FILES = ["corrupt.jpg", "empty.png"]


def write_mixed_folder(folder: Path) -> Path:
    """Images of awkward kinds that must all be indexed, plus two files that must be skipped, not crash a run."""
    import numpy as np
    from PIL import Image

    for sub in ("layers", "deep"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 40 * 30, dtype=np.float64).reshape(30, 40)
    Image.fromarray(ramp.astype(np.uint8)).save(folder / "gray.jpg")  # mode L
    colours = np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=-1).astype(np.uint8)
    Image.fromarray(colours).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(folder / "palette.png")
    rgba = np.concatenate([colours, ramp[..., None].astype(np.uint8)], axis=-1)
    Image.fromarray(rgba).save(folder / "layers" / "rgba.png")
    Image.fromarray((ramp * 257).astype(np.uint16)).save(folder / "deep" / "sixteen.png")  # 16-bit greyscale PNG
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "README.txt").write_text("not an image: ignored, not reported")
    (folder / ".hidden.png").write_bytes(b"hidden files are not part of the collection")
    return folder


def write_image_folder(folder: Path, count: int, *, size: int = 24, seed: int = 0) -> Path:
    """``count`` small distinct PNGs named 000.png, 001.png, ..."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    return write_mixed_folder(tmp_path / "mixed")


# ------------------------------------------------------------------------------------------------- the app
@pytest.fixture(scope="session")
def bundle_workspace(tmp_path_factory: pytest.TempPathFactory):
    """The offline bundle, embedded into a fresh cache: exactly what a first start on a fresh machine does."""
    from trainer.config import Settings
    from trainer.workspace import WorkspaceLoader, load_workspace

    settings = Settings.from_env(environ={}, source="bundle", cache_dir=tmp_path_factory.mktemp("cache"))
    return WorkspaceLoader(lambda progress: load_workspace(settings, progress)).start()


@pytest.fixture(scope="session")
def app_url(bundle_workspace):
    """The app launched on a free local port over the bundle; closed when the session ends."""
    import app

    bundle_workspace.wait(timeout=600)
    demo = app.build_demo(bundle_workspace)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    yield url
    demo.close()
