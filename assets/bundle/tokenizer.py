"""Tokenizer: CLIP's byte-level BPE, with merges learned from the caption vocabulary."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np

from .captions import make_caption
from .shapes import ATTRIBUTES, sample_attributes

MAX_TEXT_LENGTH = 32  # longest caption is ~16 tokens; 32 keeps the text tower small
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP mapping of every byte to a printable character, so BPE never meets an unknown symbol."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, [chr(c) for c in chars], strict=True))


def learn_bpe(word_counts: dict[str, int]) -> list[tuple[str, str]]:
    """Greedy BPE on whole words (CLIP style, ``</w>`` marks a word end) until every word is a single token.

    The caption language has only a few dozen words, so learning merges to completion is instant and gives each
    caption word its own token; any other text still tokenizes through the byte-level base alphabet.
    """
    byte_map = bytes_to_unicode()
    words: dict[tuple[str, ...], int] = {}
    for word, count in word_counts.items():
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        words[tuple(symbols)] = words.get(tuple(symbols), 0) + count
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            return merges
        # Most frequent pair first; ties broken by the pair itself so the result never depends on dict order.
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for symbols, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + count
        words = merged


def caption_word_counts(seed: int, samples: int = 20000) -> dict[str, int]:
    """Word frequencies of the caption language, measured on captions of random attribute sets."""
    rng = np.random.default_rng([seed, 1_000_003])
    counts: Counter[str] = Counter()
    for _ in range(samples):
        counts.update(make_caption(sample_attributes(rng), rng).split())
    # Every attribute value must be a whole token even if a rare template never happened to produce it.
    for values in ATTRIBUTES.values():
        counts.update(values)
    return dict(counts)


def build_tokenizer(seed: int, model_max_length: int = MAX_TEXT_LENGTH):
    """A ``CLIPTokenizer`` with the 512 byte-level base tokens, the learned merges, then bos/eos (as in CLIP)."""
    from transformers import CLIPTokenizer

    merges = learn_bpe(caption_word_counts(seed))
    base = list(bytes_to_unicode().values())
    tokens = base + [t + "</w>" for t in base] + [a + b for a, b in merges]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def save_tokenizer(tokenizer, out_dir: Path) -> None:
    """``save_pretrained`` (tokenizer.json) plus CLIP's classic vocab.json / merges.txt for older loaders."""
    tokenizer.save_pretrained(out_dir)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (out_dir / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
