"""The documentation site (mkdocs.yml, docs/) builds in strict mode, its architecture page matches the
source tree, and the README stays a short front page whose links all lead somewhere."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT / "docs" / "architecture.md"
README_MAX_LINES = 260

# a word that names a file (by its extension) or a folder (a trailing slash)
_PATH = re.compile(r"(?<![\w/.-])([\w*.-]+(?:/[\w*.-]+)*/?)")
_FILE_EXT = (".py", ".yaml", ".yml", ".cfg", ".env", ".md", ".json", ".toml", ".txt", ".png")


def _names_a_path(token: str) -> bool:
    return ("/" in token and token.rstrip("/") != "") or token.endswith(_FILE_EXT)


def _layout_entries(text: str) -> list[tuple[str, str]]:
    """(top-level path, its description) for each entry of the layout block (the first fenced block)."""
    block = re.search(r"^## Layout\n+```\n(.*?)^```", text, re.S | re.M)
    assert block, "docs/architecture.md has no '## Layout' section with a fenced block"
    entries: list[tuple[str, str]] = []
    for line in block.group(1).splitlines():
        if line and not line[0].isspace():
            head, _, rest = line.partition(" ")
            entries.append((head, rest))
        elif entries:
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
    return entries


def _exists(token: str, base: Path) -> bool:
    """``token`` as a path from the repository root, or anywhere under ``base`` (a folder of the repo)."""
    token = token.rstrip("/")
    if any(ROOT.glob(token)):
        return True
    return base != ROOT and base.is_dir() and any(base.rglob(token))


def test_mkdocs_builds_in_strict_mode(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_every_path_the_architecture_page_names_exists():
    text = ARCH.read_text()
    missing = []
    for head, rest in _layout_entries(text):
        if not (ROOT / head.rstrip("/")).exists():
            missing.append(head)
            continue
        base = ROOT / head.rstrip("/")
        missing += [f"{t} (under {head})" for t in _PATH.findall(rest) if _names_a_path(t) and not _exists(t, base)]
    # paths in backticks anywhere on the page (the 'Where to add' list, the other modules)
    for code in re.findall(r"`([^`\n]+)`", text):
        if re.fullmatch(r"[\w.-]+(?:/[\w.-]+)*/?", code) and _names_a_path(code):
            if not _exists(code, ROOT / "ic_zoo"):
                missing.append(code)
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_module_and_subpackage_of_ic_zoo_is_on_the_architecture_page():
    text = ARCH.read_text()
    pkg = ROOT / "ic_zoo"
    modules = [p.name for p in pkg.glob("*.py") if p.name != "__init__.py"]
    subpackages = [p.name + "/" for p in pkg.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    absent = [n for n in modules + subpackages if not re.search(r"(?<![\w.])" + re.escape(n), text)]
    assert not absent, f"docs/architecture.md does not mention these parts of ic_zoo/: {sorted(absent)}"


LAYERS = ("analyses", "presentation", "research", "study", "app")


def test_every_module_of_every_layer_folder_is_in_its_layout_entry():
    """Issue 37 item 1: a newcomer points at the layer of any file. Each layer folder has its entry in the
    layout block, and that entry names each of its modules and subfolders."""
    entries = dict(_layout_entries(ARCH.read_text()))
    missing = []
    for layer in LAYERS:
        folder = ROOT / "ic_zoo" / layer
        entry = entries.get(f"ic_zoo/{layer}/")
        if entry is None:
            missing.append(f"ic_zoo/{layer}/ (no entry)")
            continue
        for p in folder.rglob("*"):
            name = p.name + "/" if p.is_dir() and (p / "__init__.py").exists() else p.name
            if p.suffix == ".py" and p.name != "__init__.py" or name.endswith("/"):
                if not re.search(r"(?<![\w.])" + re.escape(name), entry):
                    missing.append(f"{p.relative_to(ROOT)} (not in the ic_zoo/{layer}/ entry)")
    assert not missing, f"docs/architecture.md's layout misses: {missing}"


def test_readme_is_short_and_its_links_exist():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "---"
    body = lines[lines.index("---", 1) + 1:]
    assert len(body) <= README_MAX_LINES, f"README.md has {len(body)} lines after its front matter; move text to docs/"
    text = "\n".join(body)
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    broken = []
    for t in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", t) or t.startswith("#"):
            continue  # a web address, or an anchor
        if not (ROOT / t.split("#")[0]).exists():
            broken.append(t)
    assert targets and not broken, f"README.md links to files that do not exist: {broken}"
