"""Every package the code imports is pinned, at the version the tests run on.

A package that arrives only as another's dependency can change version (or vanish) when that other package is
upgraded; pinning what we import keeps a fresh ``bash scripts/setup.sh`` equal to the tested environment.
"""

from __future__ import annotations

import importlib.metadata
import re

from tests.helpers.imports import ROOT, read_modules, third_party

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)")
# Optional engines: pinned in a file of their own (which requirements-dev.txt includes, so the tests run them), and
# imported by one module only, which is imported only when the feature is chosen. The app never needs them.
OPTIONAL = {"ray": ("requirements-ray.txt", "trainer.ray_indexing")}


def normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()  # PEP 503: PyYAML, pyyaml and py_yaml are one name


def pins(filename: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file and the files it includes with ``-r``."""
    found: dict[str, str] = {}
    for line in (ROOT / filename).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= pins(line[3:].strip())
        elif match := PIN.match(line):
            found[normalise(match[1])] = match[3]
    return found


def unpinned(paths: tuple[str, ...], pinned: dict[str, str]) -> dict[str, str]:
    """Imported top-level name -> its distribution, for each import under ``paths`` whose distribution is not pinned."""
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in read_modules(*paths).values():
        for top in third_party(module):
            names = distributions.get(top, [top])  # not installed at all: report the import name itself
            if not any(normalise(name) in pinned for name in names):
                missing[top] = f"{names[0]} (imported by {module.name})"
    return missing


def test_every_package_the_app_and_engine_import_is_pinned_in_requirements_txt():
    missing = unpinned(("trainer", "app.py", "assets"), pins("requirements.txt"))
    assert {name: where for name, where in missing.items() if name not in OPTIONAL} == {}


def test_an_optional_engine_is_pinned_in_its_own_file_and_imported_by_its_one_module():
    modules = read_modules("trainer", "app.py", "assets").values()
    for name, (filename, owner) in OPTIONAL.items():
        assert sorted(m.name for m in modules if name in third_party(m)) == [owner]
        distributions = importlib.metadata.packages_distributions()[name]
        assert any(normalise(d) in pins(filename) for d in distributions)
        assert normalise(distributions[0]) not in pins("requirements.txt")


def test_every_package_tests_and_benchmarks_import_is_pinned_in_a_requirements_file():
    assert unpinned(("tests", "benchmarks"), pins("requirements-dev.txt")) == {}


def test_the_pins_are_the_versions_installed_here():
    """What the suite passes on is what the files promise (a local label such as torch's ``+cpu`` aside)."""
    wrong = {}
    for name, version in pins("requirements-dev.txt").items():
        installed = importlib.metadata.version(name).split("+")[0]
        if installed != version:
            wrong[name] = f"pinned {version}, installed {installed}"
    assert wrong == {}


def test_the_import_reader_sees_the_packages_it_must_check():
    """Guards the two tests above against passing because they read nothing."""
    imported = set().union(*(third_party(m) for m in read_modules("trainer", "app.py").values()))
    assert {"torch", "numpy", "gradio", "yaml", "pyarrow", "PIL"} <= imported
    assert pins("requirements-dev.txt")["pyyaml"] and pins("requirements-dev.txt")["pytest"]
