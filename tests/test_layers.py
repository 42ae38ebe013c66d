"""The package's layers point down: a module imports only from its own package or from a lower layer
(docs/design.md, "Layers"). Every import is read, the ones inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "inc_transformer_mt"

#: lowest first; a package imports from its own package or a lower layer, never sideways or up
LAYERS: list[set[str]] = [
    {"errors", "defaults"},
    {"atomic", "env", "runtime"},
    {"data", "metrics", "recipe"},
    {"model", "report"},
    {"quant", "passes", "inference"},
    {"inc"},  # the INC plug-ins: quant hooks + inference + metrics, used by tuning's inc engine
    {"tuning", "bench", "regression"},
    {"api"},
    {"__init__"},  # the package root re-exports the API (lazily); anyone may read its __version__
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}

pytestmark = pytest.mark.unit


def _unit(module: str) -> str:
    """'inc_transformer_mt.tuning.stages' -> 'tuning'; the package root -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(source: str) -> list[tuple[int, str]]:
    """(line, imported unit) for every import of this package in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "inc_transformer_mt" else [
                f"inc_transformer_mt.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(node.lineno, _unit(n)) for n in names if n.split(".")[0] == "inc_transformer_mt"]
    return out


def violations(unit: str, source: str, where: str) -> list[str]:
    """Upward or sideways imports of a module of ``unit``."""
    found = []
    for line, target in imports_of(source):
        if target == unit or target not in RANK:
            continue
        if target == "__init__" and unit != "__init__":
            continue  # __version__
        if RANK[target] >= RANK[unit]:
            kind = "upward" if RANK[target] > RANK[unit] else "sideways"
            found.append(f"{where}:{line}: {unit} imports {target} ({kind})")
    return found


def test_every_package_is_in_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file())}
    assert units - set(RANK) == set(), "add the new package to LAYERS here and in docs/design.md"


def test_no_module_imports_from_a_layer_above_or_beside_it():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        unit = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else "__init__"
        found += violations(unit, path.read_text(), str(rel))
    assert found == []


def test_the_check_catches_a_wrong_import():
    src = "def f():\n    from inc_transformer_mt.tuning.pipeline import run_tune\n"
    assert violations("inference", src, "x.py") == ["x.py:2: inference imports tuning (upward)"]
    assert violations("tuning", "import inc_transformer_mt.regression.check\n", "y.py") == [
        "y.py:1: tuning imports regression (sideways)"]
    assert violations("tuning", "from inc_transformer_mt.model.analysis import op_census\n", "z.py") == []
