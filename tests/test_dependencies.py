"""Issue 37 item 5: what the package imports is declared. Every third-party module that a file of ic_zoo
imports belongs to a distribution that pyproject.toml declares (with a compatible range, in the
dependencies or an extra) and that requirements.txt pins exactly (the app's tested lock)."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level() -> set[str]:
    found = set()
    for path in (ROOT / "ic_zoo").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("ic_zoo", "__future__")}


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[\[<>=!~;\s]", req, maxsplit=1)[0])


def _pins(name: str) -> dict[str, str]:
    pinned = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pinned[_requirement_name(line)] = line
    return pinned


def test_opencv_is_one_build_at_the_pinned_version():
    """OpenCV's plain and contrib builds share the cv2 folder: never both installed, and the contrib pin is
    the plain one's version (requirements-contrib.txt replaces it after requirements.txt)."""
    plain = _pins("requirements.txt")["opencv-python-headless"].split("==")[1]
    contrib = _pins("requirements-contrib.txt")["opencv-contrib-python-headless"].split("==")[1]
    assert plain == contrib
    installed = {d: metadata.version(d) for d in ("opencv-python-headless", "opencv-contrib-python-headless")
                 if _installed(d)}
    assert len(installed) == 1, f"exactly one OpenCV build must be installed, not {installed}"
    assert list(installed.values()) == [plain]


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_every_import_is_declared_and_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    for reqs in project.get("optional-dependencies", {}).values():
        declared |= {_requirement_name(r) for r in reqs if not r.startswith("ic-zoo")}
    assert not [r for r in project["dependencies"] if "==" in r], "the package declares ranges, not pins"
    pinned = _pins("requirements.txt") | _pins("requirements-contrib.txt")
    assert all("==" in v for v in pinned.values()), "requirements.txt pins every version"
    owners = metadata.packages_distributions()
    missing = {}
    for module in sorted(_imported_top_level()):
        dists = {_norm(d) for d in owners.get(module, [])}
        if not dists:
            missing[module] = "not installed"
        elif not dists & declared:
            missing[module] = f"{sorted(dists)} not declared in pyproject.toml"
        elif not dists & set(pinned):
            missing[module] = f"{sorted(dists)} not pinned in requirements.txt"
    # spaces: only on Hugging Face's ZeroGPU hardware, imported there and nowhere else
    missing.pop("spaces", None)
    assert not missing, missing
