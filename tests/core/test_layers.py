"""Core's folders are layers (design.md): nothing imports upward, so the folders tell the data's one-way story."""

from __future__ import annotations

import ast
from pathlib import Path

import vlm2vec_core

PACKAGE = Path(vlm2vec_core.__file__).parent
LAYER = {
    "types": 0,
    "errors": 0,
    "tasks": 0,
    "media": 1,  # files -> pages, clips, images; fitting
    "families": 1,  # model profiles: data and small pure functions
    "encoders": 2,
    "rerank": 2,
    "index": 3,
    "apps": 4,
    "": 5,  # the package's own __init__: the public names
}


def _imports(path: Path, root: Path) -> list[tuple[str, int]]:
    """The vlm2vec_core modules ``path`` (under the package folder ``root``) imports, with line numbers."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    package = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            found.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vlm2vec_core"):
            found.append((node.module or "", node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("vlm2vec_core")]
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(root: Path) -> list[str]:
    """Every import in the package at ``root`` of a module in a higher layer than the importer's."""
    upward = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        here = rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else ""
        assert here in LAYER, (
            f"{rel}: a new top-level module or folder: give it a layer in LAYER (tests/core/test_layers.py)"
        )
        for target, line in _imports(path, root):
            there = _layer(target)
            assert there in LAYER, f"{rel}:{line} imports {target}, which is in no layer"
            if LAYER[there] > LAYER[here]:
                upward.append(f"{rel}:{line} ({here or '__init__'}) imports {target} ({there})")
    return upward


def test_no_module_imports_a_higher_layer():
    assert len(list(PACKAGE.rglob("*.py"))) > 40
    upward = upward_imports(PACKAGE)
    assert not upward, "\n".join(upward)


def test_the_check_finds_an_upward_import_relative_or_absolute(tmp_path: Path):
    root = tmp_path / "vlm2vec_core"
    (root / "media").mkdir(parents=True)
    (root / "__init__.py").write_text("from .media.pdf import pdf_pages\n")
    (root / "media" / "__init__.py").write_text("")
    (root / "media" / "pdf.py").write_text(
        "from ..errors import InputError\nfrom ..index.store import ChromaStore\n\n\n"
        "def f():\n    from vlm2vec_core.apps import cli\n"
    )
    assert upward_imports(root) == [
        "media/pdf.py:2 (media) imports vlm2vec_core.index.store (index)",
        "media/pdf.py:6 (media) imports vlm2vec_core.apps (apps)",
    ]
