"""The build of the offline demo bundle: ``python -m assets.bundle [--seed 0] [--out assets] [--steps 2000]``.

Everything is derived from the seed, into the folder beside this package:

1. ``shapes/``: ~3,000 procedurally drawn 64x64 images with five independent attributes (colour, shape, size,
   background texture, background tone) and captions that name only some attributes at a time, written as
   ``train.parquet`` / ``validation.parquet`` so that ``datasets.load_dataset("assets/shapes")`` loads them.
2. ``tiny-clip/``: a CLIP byte-level BPE tokenizer whose merges are learned from the caption vocabulary, a
   ``CLIPImageProcessor`` for 64x64 inputs, and a small ``CLIPModel`` trained contrastively on freshly drawn images,
   all in the standard Hugging Face layout (``from_pretrained`` works offline).
3. ``BUNDLE_REPORT.md``: zero-shot retrieval quality on the validation split (average precision per prompt).

One module per part, in the order the build runs them:

- ``shapes``: the attributes and how an image showing them is drawn
- ``captions``: captions naming some of an image's attributes
- ``collection``: the shipped splits, item by item, and their parquet files
- ``tokenizer``: CLIP's byte-level BPE with merges learned from the captions
- ``model``: the tiny CLIP's recipe (``TrainSettings``), image processor and initial weights
- ``training``: the training stream of fresh images and the training loop
- ``evaluation``: zero-shot AP per prompt and a linear probe per attribute
- ``report``: ``BuildResult`` (everything one build measured) and ``BUNDLE_REPORT.md``
- ``__main__``: ``build()`` and the command line

Importing any of them does no work (torch, transformers and datasets load inside the functions that need them), so
tests and benchmarks import them directly: ``from assets.bundle.collection import build_split``.
"""
