"""Command-line front ends for sharing: ``python -m trainer push`` and ``python -m trainer predict``.

Each command is ``add_<name>_command(subparsers)``, which registers its arguments and sets ``func`` to
``cmd_<name>(args) -> int``, the convention of ``trainer/cli.py``. Only argparse is imported at module level, so
building the parser (and ``--help``) stays instant; torch and huggingface_hub load when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_predict_command", "add_push_command", "cmd_predict", "cmd_push"]

_SHOW_UNREADABLE = 20  # beyond this many, the summary says how many more


def add_push_command(subparsers: argparse._SubParsersAction) -> None:
    push = subparsers.add_parser(
        "push",
        help="push an exported classifier to the Hugging Face Hub",
        description="Upload an exported classifier folder (weights, config, model card, labels) to a model repo. "
        "The token comes from HF_TOKEN or `hf auth login`.",
    )
    push.add_argument("--classifier", type=Path, required=True, help="the exported classifier folder")
    push.add_argument("--repo", required=True, help="repo id: 'name' (your account) or 'owner/name'")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--exist-ok", action="store_true", help="add a commit if the repo already exists (yours)")
    push.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    from trainer.hub import push_classifier
    from trainer.hub_calls import HubError, find_local_token, validate_repo_id

    try:
        repo_id = validate_repo_id(args.repo)  # a bad name is worth hearing about before a missing token
        url = push_classifier(
            args.classifier, repo_id, find_local_token(), private=args.private, exist_ok=args.exist_ok
        )
    except HubError as err:  # its message is already scrubbed of the token and says what to do
        raise SystemExit(f"push failed: {err}") from None
    print(f"Pushed {args.classifier} to {url}")
    return 0


def add_predict_command(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="score a folder of images with a classifier",
        description="Load a classifier (Hub repo or exported folder), embed every image under a folder with its "
        "base CLIP model, and write path, probability and above_threshold to a CSV. Unreadable images are "
        "reported by name and skipped.",
    )
    predict.add_argument("--classifier", required=True, help="Hub repo id or exported classifier folder")
    predict.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    predict.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (default: scores.csv)")
    predict.add_argument("--model", help="embed with this CLIP model instead of the classifier's own (same size)")
    predict.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    predict.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from trainer.hub_calls import HubError
    from trainer.predict import predict_folder

    try:
        report = predict_folder(args.classifier, args.images, args.out, model=args.model, batch_size=args.batch_size)
    except (HubError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"predict failed: {err}") from None
    print(f"Scored {report.scored} images, {report.above_threshold} above the threshold, into {report.out}")
    if report.unreadable:
        print(f"Skipped {len(report.unreadable)} unreadable image(s):")
        for name, why in report.unreadable[:_SHOW_UNREADABLE]:
            print(f"  {name}: {why}")
        if len(report.unreadable) > _SHOW_UNREADABLE:
            print(f"  ... and {len(report.unreadable) - _SHOW_UNREADABLE} more")
    return 0 if report.scored else 1
