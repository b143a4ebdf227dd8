"""The import rules of ARCHITECTURE.md, checked on the source: its layer table is the map, and its rules are the
forbidden edges. Imports are read with ``ast`` (tests/helpers/imports.py), lazy and type-only ones included."""

from __future__ import annotations

import ast
import re

from tests.helpers.imports import ROOT, Module, module_name, private_uses, reachable, read_modules, third_party

MODULES = read_modules("trainer", "app.py")


def layer_table() -> dict[str, tuple[int, str]]:
    """Module name -> (height, layer name) from ARCHITECTURE.md's table; the app is the top row, height 0."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ") and "`" in line]
    layers: dict[str, tuple[int, str]] = {}
    for height, (layer, cell) in enumerate(rows):
        folder = ""
        for token in re.findall(r"`([^`]+)`", cell):
            if "/" in token:
                folder = token.rpartition("/")[0] + "/"
                token = token.rpartition("/")[2]
            path = ROOT / folder / token
            files = sorted(path.rglob("*.py")) if not token else [path]
            for file in files:
                layers[module_name(file)] = (height, layer.strip())
    return layers


LAYERS = layer_table()


def in_layer(name: str) -> list[str]:
    return sorted(module for module, (_, layer) in LAYERS.items() if layer == name)


def forbidden_reach(sources: list[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """For each source module, the forbidden modules it imports directly or through other modules."""
    found = {}
    for source in sources:
        hits = sorted(n for n in reachable(source, MODULES) if n.startswith(forbidden))
        if hits:
            found[source] = hits
    return found


def test_every_module_of_the_engine_and_the_app_has_one_row_in_the_layer_table():
    unplaced = sorted(set(MODULES) - set(LAYERS))
    assert unplaced == [], f"add these modules to a row of ARCHITECTURE.md's layer table: {unplaced}"
    assert sorted(set(LAYERS) - set(MODULES)) == [], "the layer table names modules that do not exist"


def test_each_module_imports_only_from_its_own_layer_or_below():
    upward = [
        f"{module.name} ({LAYERS[module.name][1]}) imports {name} ({LAYERS[name][1]})"
        for module in MODULES.values()
        for name in sorted(module.imports)
        if name in LAYERS and module.name in LAYERS and LAYERS[name][0] < LAYERS[module.name][0]
    ]
    assert upward == []


def test_the_engine_never_imports_the_app_gradio_tests_or_benchmarks():
    engine = [name for name in MODULES if name.startswith("trainer")]
    assert forbidden_reach(engine, ("app", "tests", "benchmarks")) == {}
    assert sorted(name for name in engine if "gradio" in third_party(MODULES[name])) == []


def test_indexes_import_nothing_that_holds_per_user_state():
    per_user = ("trainer.session", "trainer.classifier", "trainer.strategies", "trainer.workspace")
    assert forbidden_reach(in_layer("search"), per_user) == {}


def test_the_classifier_never_imports_an_index():
    assert forbidden_reach(["trainer.classifier"], ("trainer.index",)) == {}


def test_sharing_never_imports_the_session():
    assert forbidden_reach(in_layer("sharing"), ("trainer.session",)) == {}
    assert "trainer.record" in MODULES["trainer.export"].imports  # what it reads instead


# One idea per file: "about 500 lines at most" in trainer/, with some room for a docstring to grow.
MAX_LINES = 550


def test_no_engine_module_is_longer_than_about_500_lines():
    """A module past this holds more than one idea: split it by idea (each part a row in ARCHITECTURE.md)."""
    lines = {name: len(module.path.read_text(encoding="utf-8").splitlines()) for name, module in MODULES.items()}
    long = {name: n for name, n in lines.items() if name.startswith("trainer") and n > MAX_LINES}
    assert long == {}, f"over {MAX_LINES} lines (one idea per file, about 500 lines at most): {long}"
    assert 0 < lines["trainer.session"] <= MAX_LINES


def test_the_checks_above_read_real_imports():
    """Guards every test above against passing because the reader or the table found nothing."""
    assert {"trainer.session", "trainer.classifier", "trainer.index.local", "app"} <= set(MODULES)
    assert "trainer.index" in MODULES["trainer.session"].imports  # a known edge, through a relative import
    assert "trainer.indexing" in reachable("trainer.workspace", MODULES)  # and a known path
    assert {"trainer.hub", "trainer.card"} <= set(in_layer("sharing"))
    assert {"trainer.index", "trainer.index.local", "trainer.index.pinecone"} <= set(in_layer("search"))
    assert LAYERS["app"][0] < LAYERS["trainer.session"][0] < LAYERS["trainer.config"][0]
    assert "gradio" in third_party(MODULES["app"])


# ------------------------------------------------------------------------------------------- the tests' own rules
TESTS = read_modules("tests")


def test_test_modules_never_import_each_other_or_conftest():
    """Shared test code lives in tests/helpers/; conftest.py only declares fixtures."""
    crossing = {
        name: sorted(i for i in module.imports if i.startswith(("tests.test_", "tests.conftest")))
        for name, module in TESTS.items()
    }
    assert {name: found for name, found in crossing.items() if found} == {}


def checks_something(test: ast.FunctionDef) -> bool:
    """An ``assert``, or a call that fails the test by itself: ``pytest.raises`` / ``warns``, ``assert_*``."""
    for node in ast.walk(test):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"raises", "warns", "deprecated_call"} or name.startswith("assert"):
                return True
    return False


def test_every_test_asserts_something_or_expects_an_error():
    """A test that checks nothing passes whatever the code does."""
    unchecked = [
        f"{module.path.relative_to(ROOT)}:{node.lineno} {node.name}"
        for module in TESTS.values()
        for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and not checks_something(node)
    ]
    assert unchecked == []


def test_no_module_reaches_into_another_modules_private_names(tmp_path):
    """A helper another module needs is public in its home (ARCHITECTURE.md's habits): no ``from x import _y``, no
    ``x._y``, and no test patching ``x._y``, in the engine, the app, the benchmarks, the bundle builder or the tests."""
    everything = {**MODULES, **read_modules("benchmarks", "assets"), **TESTS}
    assert [use for module in everything.values() for use in private_uses(module)] == []
    reaching = tmp_path / "reaching.py"  # and the reader does see each kind
    reaching.write_text(
        "from trainer.embed import _x\nimport trainer.hub as hub\nfrom . import data\n"
        "hub._y()\nmonkeypatch.setattr(data, '_z', 1)\nmonkeypatch.setattr('trainer.hub._w', 1)\nhub.ok()\n"
    )
    assert len(private_uses(Module("tests.reaching", reaching, frozenset()))) == 4
