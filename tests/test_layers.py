"""Issue 37 item 1: the package's layers are folders, and no module imports from a layer above its own.

Layers, bottom up: the core (the package root and its plugin folders: classifiers, inpainters, explainers,
flower2d), ``analyses``, ``presentation``, ``research`` and ``study``, ``app``, and the entry points
(``cli``, ``__main__``). Every import is read, the lazy ones inside functions included."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"analyses": 1, "presentation": 2, "research": 3, "study": 3, "app": 4, "cli": 5, "__main__": 5}
#: the crossings still to remove (docs/architecture.md names them): (importer, imported)
KNOWN: set[tuple[str, str]] = set()


def layer(module: str) -> int:
    parts = module.split(".")
    return RANK.get(parts[1], 0) if len(parts) > 1 else 0


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(line, imported module) for every import of an ic_zoo module in ``path``."""
    me = _module(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg.split(".")
            mod = (".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
                   if node.level else node.module or "")
            if mod.startswith("ic_zoo"):
                for a in node.names:  # from x import y: y a module of x, or a name defined in x
                    sub = ROOT / (mod + "." + a.name).replace(".", "/")
                    yield node.lineno, f"{mod}.{a.name}" if sub.is_dir() or sub.with_suffix(".py").exists() else mod
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("ic_zoo"))


def test_no_module_imports_from_a_layer_above_its_own():
    upward, seen = [], set()
    for path in sorted((ROOT / "ic_zoo").rglob("*.py")):
        me = _module(path)
        for line, target in imports(path):
            if layer(target) > layer(me):
                if (me, target) in KNOWN:
                    seen.add((me, target))
                    continue
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} (layer {layer(target)} above "
                              f"{layer(me)})")
    assert not upward, "imports that run back up:\n" + "\n".join(upward)
    assert seen == KNOWN, f"crossings listed as known that are gone (remove them from KNOWN): {KNOWN - seen}"


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check is not blind: a core module importing the app is caught, a lazy import included."""
    fake = ROOT / "ic_zoo" / "_layer_probe_tmp.py"
    fake.write_text("def f():\n    from .app import serve\n")
    try:
        assert [t for _, t in imports(fake)] == ["ic_zoo.app.serve"]
        assert layer("ic_zoo.app.serve") > layer(_module(fake))
    finally:
        fake.unlink()
