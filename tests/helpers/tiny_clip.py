"""A tiny randomly initialised CLIP in the standard Hugging Face format, built in well under a second, so that
every test can go through the same ``from_pretrained`` path as the real model."""

from __future__ import annotations

import json
from pathlib import Path

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
