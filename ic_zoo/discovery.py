"""Plugin discovery: built-ins, then installed packages, then a plugins folder, into one registry.

Loading never raises: each source is imported on its own, and what failed is recorded with the
reason (a missing dependency comes with its ``pip install`` line). Each source's declarations (what
its modules passed to ``register``) are built into a fresh Registry, checked there, and merged into
the target only when the whole source loaded, so the registry never holds half a plugin. The import
graph is one way: ``discovery -> registry``.

Environment:
  IC_ZOO_DISABLE_PLUGIN_AUTOLOAD=1   skip entry points and the plugins folder (tests, locked-down hosts)
  IC_ZOO_PLUGINS_DIR=path            the plugins folder (default: ``plugins/`` beside ``app.py``)

The plugins folder runs its code, so it is never taken from the working directory: the default is the
app's own ``plugins/`` (next to ``app.py`` in a checkout or a Space; none for an installed package),
and anything else must be named (IC_ZOO_PLUGINS_DIR, ``--plugins-dir``, ``plugins_dir=``).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .registry import DECLARED, REGISTRY, PluginSpec, Registry, within, pip_hint

ENTRY_POINT_GROUP = "ic_zoo.plugins"
DISABLE_ENV = "IC_ZOO_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_DIR_ENV = "IC_ZOO_PLUGINS_DIR"
#: The app's folder: the checkout (or Space) that holds app.py next to the ic_zoo package.
APP_DIR = Path(__file__).resolve().parents[1]

BUILTIN_MODULES = (
    "ic_zoo.classifiers.torchvision_models",
    "ic_zoo.classifiers.timm_models",
    "ic_zoo.classifiers.hf_models",
    "ic_zoo.classifiers.clip_models",
    "ic_zoo.classifiers.flower2d_models",
    "ic_zoo.inpainters.opencv_inpaint",
    "ic_zoo.inpainters.patchmatch_inpaint",
    "ic_zoo.inpainters.lama_inpaint",
    "ic_zoo.explainers.cam_methods",
    "ic_zoo.explainers.channel_cams",
    "ic_zoo.explainers.attention",
    "ic_zoo.explainers.captum_methods",
    "ic_zoo.explainers.true_cam",
    "ic_zoo.explainers.occlusion",
    "ic_zoo.explainers.vebi",
    "ic_zoo.flower2d.cli",
    "ic_zoo.research.explain_bench",
    "ic_zoo.research.vebi_cli",
    "ic_zoo.study.cli",
    "ic_zoo.research.latency",
    "ic_zoo.research.bench",
)


@dataclass
class LoadRecord:
    source: str
    origin: str  # "built-in", "entry point" or "folder"
    ok: bool
    registered: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "origin": self.origin, "ok": self.ok,
                "registered": self.registered, "error": self.error}


@dataclass
class LoadReport:
    records: list[LoadRecord] = field(default_factory=list)

    @property
    def loaded(self) -> list[LoadRecord]:
        return [r for r in self.records if r.ok]

    @property
    def failed(self) -> list[LoadRecord]:
        return [r for r in self.records if not r.ok]

    def summary(self) -> str:
        n = sum(len(r.registered) for r in self.loaded)
        lines = [f"{len(self.loaded)} plugin sources loaded ({n} plugins), {len(self.failed)} failed"]
        lines += [f"  FAILED {r.source}: {r.error}" for r in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"records": [r.to_dict() for r in self.records]}


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"missing dependency '{exc.name}' ({pip_hint(exc.name)})"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _load_one(registry: Registry, source: str, origin: str, load: Callable[[], Any], owns: tuple[str, ...]) -> LoadRecord:
    """Import one source (``load``), build the declarations of the modules it owns (names or package
    prefixes) into a fresh Registry, and merge that into ``registry``. On any failure nothing is merged
    and the source's declarations are dropped."""
    DECLARED.claim(owns)  # what it declares while loading waits for the outcome

    def owned() -> list[str]:
        return [m for m in DECLARED.modules() if within(owns, m)]

    try:
        result = load()
        if callable(result) and origin == "entry point":
            result()  # an entry point may name a function that registers its plugins
        fresh = Registry()
        for d in DECLARED.declarations(owned()):
            fresh.add(d.spec if origin == "built-in" else dataclasses.replace(d.spec, source=source),
                      replace=d.replace)
        registry.merge(fresh)
    except BaseException as exc:  # noqa: BLE001 - a plugin must never take the app down
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and origin == "built-in":
            raise
        DECLARED.forget(owned())
        return LoadRecord(source, origin, False, [], _describe_failure(exc))
    return LoadRecord(source, origin, True, [f"{s.kind}:{s.name}" for s in fresh.specs()])


def _import_file(path: Path):
    mod_name = _file_module(path)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def _file_module(path: Path) -> str:
    return f"ic_zoo_plugins.{path.stem}"


def autoload_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def plugins_dir_default() -> Path | None:
    """IC_ZOO_PLUGINS_DIR, else the app's own plugins/ folder (never the working directory)."""
    env = os.environ.get(PLUGINS_DIR_ENV)
    if env:
        return Path(env)
    if (APP_DIR / "app.py").is_file():
        return APP_DIR / "plugins"
    return None


def discover(registry: Registry | None = None, *, builtins: bool = True, entry_points: bool | None = None,
             plugins_dir: str | os.PathLike | None | bool = None) -> LoadReport:
    """Load plugins into ``registry`` (default: the process registry) and report what happened.

    ``entry_points`` and ``plugins_dir`` default to on, unless IC_ZOO_DISABLE_PLUGIN_AUTOLOAD is set.
    ``plugins_dir=False`` skips the folder; a path overrides IC_ZOO_PLUGINS_DIR and the app's plugins/.
    """
    registry = registry if registry is not None else REGISTRY
    report = LoadReport()
    auto = not autoload_disabled()
    if builtins:
        for name in BUILTIN_MODULES:
            report.records.append(_load_one(registry, f"{name} (built-in)", "built-in",
                                            lambda n=name: importlib.import_module(n), (name,)))
    if entry_points if entry_points is not None else auto:
        try:
            eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        except Exception as exc:  # broken metadata must not stop the app
            report.records.append(LoadRecord("entry points", "entry point", False, [], _describe_failure(exc)))
            eps = []
        for ep in eps:
            dist = getattr(getattr(ep, "dist", None), "name", None)
            src = f"{ep.value} (entry point '{ep.name}'" + (f" of {dist})" if dist else ")")
            module = getattr(ep, "module", None) or ep.value.split(":")[0]
            report.records.append(_load_one(registry, src, "entry point", ep.load, (module.split(".")[0],)))
    folder = None
    if plugins_dir is None:
        folder = plugins_dir_default() if auto else None
    elif plugins_dir is not False:
        folder = Path(plugins_dir)
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            report.records.append(_load_one(registry, str(path), "folder", lambda p=path: _import_file(p),
                                            (_file_module(path),)))
    return report


_LOCK = threading.Lock()
_REPORT: LoadReport | None = None


def ensure_loaded(**kwargs) -> LoadReport:
    """Discover into the process registry once; later calls return the same report. Declarations made
    by modules discovery does not load (a script, a notebook) join it then, and as they are made after."""
    global _REPORT
    if _REPORT is None:
        with _LOCK:
            if _REPORT is None:
                report = discover(**kwargs)
                for d in DECLARED.declarations(DECLARED.modules()):
                    if DECLARED.is_source(d.module):
                        continue
                    try:
                        REGISTRY.add(d.spec, replace=d.replace)
                    except Exception as exc:  # noqa: BLE001 - a clash is reported like a failed source
                        report.records.append(LoadRecord(d.module, "direct", False, [], _describe_failure(exc)))
                REGISTRY.loaded = True
                _REPORT = report
    return _REPORT


def loaded() -> Registry:
    """The process registry, discovered."""
    ensure_loaded()
    return REGISTRY


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Create a plugin from the process registry (discovering plugins on first use)."""
    return loaded().create(kind, name, **kwargs)


def instance(kind: str, name: str, **kwargs: Any) -> Any:
    """A cached shared plugin object (models are loaded once per process)."""
    return loaded().instance(kind, name, **kwargs)


def list_plugins(kind: str | None = None) -> list[PluginSpec]:
    return loaded().specs(kind)


def get_spec(kind: str, name: str) -> PluginSpec:
    return loaded().spec(kind, name)
