"""Embedder on a tiny random CLIP: shapes, per-vector normalisation, every image mode, prompt validation."""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from trainer import embed
from trainer.checks import MAX_PROMPT_CHARS
from trainer.embed import EMPTY_PROMPT_MESSAGE, to_rgb

PROMPTS = ["a dog in the snow", "red", "a small blue square on stripes"]


def _gradient(mode: str, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A test image in ``mode`` with varied content (a flat image would hide channel mix-ups)."""
    rgb = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    rgb[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :]
    rgb[..., 1] = np.linspace(255, 0, size[1], dtype=np.uint8)[:, None]
    rgb[..., 2] = 90
    base = Image.fromarray(rgb)
    if mode == "P+transparency":
        image = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        image.info["transparency"] = 0
        return image
    if mode == "I;16":
        return Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(np.asarray(base.convert("L"), dtype=np.int32) * 1000)
    if mode == "F":
        return Image.fromarray(np.asarray(base.convert("L"), dtype=np.float32) / 255.0)
    if mode in {"RGBA", "LA"}:
        image = base.convert(mode)
        image.putalpha(Image.linear_gradient("L").resize(size))
        return image
    return base.convert(mode)


ALL_MODES = ["RGB", "L", "LA", "P", "P+transparency", "RGBA", "CMYK", "I;16", "I", "F", "1"]


def test_text_rows_are_float32_unit_vectors_of_the_projection_dim(tiny_embedder):
    vectors = tiny_embedder.embed_text(PROMPTS)
    assert vectors.shape == (len(PROMPTS), tiny_embedder.dim) == (3, 16)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_image_rows_are_float32_unit_vectors_of_the_projection_dim(tiny_embedder):
    vectors = tiny_embedder.embed_images([_gradient("RGB"), _gradient("L", (20, 70))])
    assert vectors.shape == (2, 16)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_text_normalisation_is_per_vector_not_per_batch(tiny_embedder):
    batch = tiny_embedder.embed_text(PROMPTS)
    alone = np.concatenate([tiny_embedder.embed_text([p]) for p in PROMPTS])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    # The rows must differ, or the check above would pass on a constant output.
    assert np.abs(batch[0] - batch[1]).max() > 1e-3


def test_image_normalisation_is_per_vector_not_per_batch(tiny_embedder):
    images = [_gradient("RGB"), _gradient("CMYK"), Image.new("RGB", (33, 31), (250, 10, 10))]
    batch = tiny_embedder.embed_images(images)
    alone = np.concatenate([tiny_embedder.embed_images([image]) for image in images])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    assert np.abs(batch[0] - batch[2]).max() > 1e-3


@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_image_mode_gives_a_finite_unit_vector(tiny_embedder, mode):
    image = _gradient(mode)
    assert image.mode == mode.split("+")[0]
    vector = tiny_embedder.embed_images([image])
    assert vector.shape == (1, 16)
    assert np.isfinite(vector).all()
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_sixteen_bit_images_are_rescaled_not_clipped():
    # Pillow's own I;16 -> L conversion clips at 255, turning a gradient almost all white.
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    grey = np.asarray(to_rgb(Image.fromarray(values)))[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    assert 120 < grey.mean() < 135  # a linear ramp averages mid-grey
    np.testing.assert_array_equal(grey, np.rint(values / 257).astype(np.uint8))


def test_float_images_in_unit_range_map_to_full_8_bit_range():
    values = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    grey = np.asarray(to_rgb(Image.fromarray(values)))[..., 0]
    assert grey.min() == 0 and grey.max() == 255


def test_alpha_is_composited_on_white_not_black():
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert to_rgb(transparent).getpixel((0, 0)) == (255, 255, 255)
    half_red = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    r, g, b = to_rgb(half_red).getpixel((0, 0))
    assert r == 255 and 120 < g < 135 and g == b
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_empty_or_whitespace_prompt_raises_a_clear_value_error(tiny_embedder, prompt):
    with pytest.raises(ValueError, match="Describe the concept in a few words") as info:
        tiny_embedder.embed_text(["a cat", prompt])
    assert str(info.value).startswith(EMPTY_PROMPT_MESSAGE)


def test_a_bare_string_is_refused_rather_than_embedded_letter_by_letter(tiny_embedder):
    with pytest.raises(TypeError, match=r"\[prompt\]"):
        tiny_embedder.embed_text("a cat")


def test_a_prompt_over_the_token_limit_is_truncated_with_a_logged_note(tiny_embedder, caplog):
    long_prompt = "dogs in the snow " * 60  # 1,020 characters, far more tokens than the model reads
    with caplog.at_level(logging.WARNING, logger="trainer.embed"):
        vector = tiny_embedder.embed_text([long_prompt[:MAX_PROMPT_CHARS]])
    assert vector.shape == (1, 16) and np.isfinite(vector).all()
    assert any("truncated" in record.getMessage() for record in caplog.records)
    # Truncation keeps the start: the same prefix gives the same vector as the full prompt.
    prefix = tiny_embedder.embed_text([long_prompt[:500]])
    np.testing.assert_allclose(vector, prefix, atol=1e-6)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("x" * (MAX_PROMPT_CHARS + 1), "1,001 characters long; the limit is 1,000"),
        ("x" * 10_000_000, "10,000,000 characters long; the limit is 1,000"),
        ("dogs\x00 in the snow", r"control character \(U\+0000\) at position 5"),
        ("dogs \x1b[31m red", r"control character \(U\+001B\)"),
        ("dogs \ud800 snow", r"lone surrogate \(U\+D800\) at position 6"),
        (b"dogs", "Prompt 2 must be text; got b'dogs'"),
        (None, "The prompt must be text; got None"),
    ],
    ids=["1,001 chars", "10 MB", "NUL", "escape sequence", "lone surrogate", "bytes", "None"],
)
def test_bad_prompts_are_refused_before_tokenizing_naming_what_to_change(tiny_embedder, prompt, message, monkeypatch):
    def tokenize(*args, **kwargs):
        raise AssertionError("tokenized a prompt that should have been refused")

    monkeypatch.setattr(tiny_embedder, "tokenizer", tokenize)
    with pytest.raises(ValueError, match=message):
        tiny_embedder.embed_text(["a cat", prompt] if prompt is not None else [prompt])


def test_tabs_and_line_breaks_in_a_prompt_read_as_spaces(tiny_embedder):
    np.testing.assert_array_equal(
        tiny_embedder.embed_text(["dogs\tin the\nsnow "]), tiny_embedder.embed_text(["dogs in the snow"])
    )


def test_short_prompt_logs_nothing(tiny_embedder, caplog):
    with caplog.at_level(logging.WARNING, logger="trainer.embed"):
        tiny_embedder.embed_text(["a dog"])
    assert not caplog.records


@pytest.mark.parametrize("prompt", ["猫が雪の中にいる", "собака на снегу", "🐕 في الثلج"])
def test_non_latin_prompts_embed_to_unit_vectors(tiny_embedder, prompt):
    vector = tiny_embedder.embed_text([prompt])
    assert np.isfinite(vector).all()
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_preprocess_then_embed_pixels_equals_embed_images(tiny_embedder):
    images = [_gradient("RGB"), _gradient("P")]
    pixels = tiny_embedder.preprocess_images(images)
    assert isinstance(pixels, torch.Tensor) and pixels.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(tiny_embedder.embed_pixels(pixels), tiny_embedder.embed_images(images))


def test_empty_inputs_give_empty_arrays(tiny_embedder):
    assert tiny_embedder.embed_text([]).shape == (0, 16)
    assert tiny_embedder.embed_images([]).shape == (0, 16)


def test_uses_the_pil_image_processor_not_a_torchvision_one(tiny_embedder):
    from transformers.image_processing_backends import PilBackend

    assert isinstance(tiny_embedder.image_processor, PilBackend)


def test_feature_output_object_and_plain_tensor_are_both_accepted():
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    features = torch.tensor([[3.0, 4.0]])
    wrapped = BaseModelOutputWithPooling(pooler_output=features)
    assert embed.features_tensor(wrapped) is features
    assert embed.features_tensor(features) is features
    with pytest.raises(TypeError, match="pooler_output"):
        embed.features_tensor(object())


def test_missing_local_model_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        embed.load(str(tmp_path / "nope"))


def test_a_local_model_is_known_by_its_name_and_content_never_its_path(tiny_clip_dir, tmp_path):
    from trainer.embed import is_local_identity, model_identity

    identity = model_identity(str(tiny_clip_dir))
    assert re.fullmatch(rf"{tiny_clip_dir.name}@sha256:[0-9a-f]{{12}}", identity) and is_local_identity(identity)
    assert str(tmp_path.parent) not in identity
    copy = shutil.copytree(tiny_clip_dir, tmp_path / "elsewhere" / tiny_clip_dir.name)
    assert model_identity(str(copy)) == identity  # the same model on another machine, or in another folder
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert model_identity(str(copy)) != identity  # another model, whatever its name
    assert model_identity("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    assert not is_local_identity("openai/clip-vit-base-patch32") and not is_local_identity(str(tiny_clip_dir))
