"""trainer/export.py: what an export writes; here, every image's score as a CSV file (Classify's download)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from trainer.export import write_scores


def test_scores_are_written_best_first_with_every_id(tmp_path):
    path = write_scores(["a", "b", "c"], np.asarray([0.2, 0.9, 0.5]), tmp_path / "scores.csv")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["id", "score"], ["b", "0.900000"], ["c", "0.500000"], ["a", "0.200000"]]
    with pytest.raises(ValueError, match="3 ids but 2 scores"):
        write_scores(["a", "b", "c"], np.asarray([0.2, 0.9]), tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()
