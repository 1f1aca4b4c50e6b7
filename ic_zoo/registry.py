"""The plugin registry: one decorator for classifiers, inpainters and explainers.

Built-ins, installed packages (entry-point group ``ic_zoo.plugins``) and ``.py`` files in a plugins
folder all register through :func:`register`, right where the factory is defined (the timm way: no
central list to drift). Nothing heavy is imported here; factories import what they need when called.

    from ic_zoo import register

    @register("inpainter", "pixelate", description="Mosaic fill")
    class Pixelate(Inpainter): ...

A factory is any callable returning the plugin object. A name ending in ``:`` registers a namespace:
``create("classifier", "timm:convnext_tiny")`` calls the ``timm:`` factory with ``"convnext_tiny"``.

:func:`register` declares: it checks the plugin and records it under the module that declared it
(:data:`DECLARED`, like timm's ``_module_to_models``). A :class:`Registry` holds specs; discovery
(``ic_zoo.discovery``) builds each plugin source's declarations into a fresh Registry and merges it
into the process registry only when the whole source loaded. Declarations from modules discovery does
not load (a script, a notebook, a test) go straight into the process registry once it is loaded. This
module imports nothing from discovery.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from .errors import (DuplicatePluginError, IcZooError, InputError, PluginContractError, PluginUnavailableError,
                     UnknownPluginError)

KINDS = ("classifier", "inpainter", "explainer", "command")
#: each kind's base class, imported only when a plugin class is registered or an object is made
KIND_BASES = {"classifier": ("ic_zoo.classifiers._base", "Classifier"),
              "inpainter": ("ic_zoo.inpainters._base", "Inpainter"),
              "explainer": ("ic_zoo.explainers._base", "Explainer"),
              "command": ("ic_zoo.command", "Command")}
#: what a plugin class may declare as class attributes instead of register()'s keywords (once: both,
#: when they differ, is refused)
CLASS_META = ("description", "cost")
#: an explainer's cost says when its maps are made: "interactive" from the edit's own forward pass, on
#: every stroke; "slow" with passes of its own, on demand (the app's Slow maps). Only explainers have one.
COSTS = ("interactive", "slow")

#: import name -> the line that installs it, for modules whose PyPI name differs.
PIP_NAMES = {
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "patchmatch": "PyPatchMatch",
    "yaml": "PyYAML",
    "pytorch_grad_cam": "grad-cam",
    "sqlalchemy": "SQLAlchemy",
}


def _importable(mod: str) -> bool:
    """Whether ``mod`` can be imported, without importing it.

    A module that is in ``sys.modules`` counts as importable even when its ``__spec__`` is
    None: that is a module another thread is importing right now (OpenCV's loader, for one,
    swaps ``cv2`` in ``sys.modules`` while it loads its binary), and ``find_spec`` raises
    ValueError for it. Treating that as "missing" once made a restarted app refuse its
    inpainter while its warm-up thread was importing cv2.
    """
    if sys.modules.get(mod) is not None:
        return True
    try:
        return importlib.util.find_spec(mod) is not None
    except ValueError:  # sys.modules[mod] appeared, spec-less, between the two lines above
        return mod in sys.modules
    except ImportError:  # a parent package that cannot be imported
        return False


def pip_hint(module: str) -> str:
    top = module.split(".")[0]
    return f"pip install {PIP_NAMES.get(top, top)}"


def _default_source(factory: Callable) -> str:
    mod = getattr(factory, "__module__", "") or ""
    if mod.startswith("ic_zoo.") or mod == "ic_zoo":
        return "ic_zoo (built-in)"
    return mod or "<unknown>"


def kind_base(kind: str) -> type:
    mod, attr = KIND_BASES[kind]
    return getattr(importlib.import_module(mod), attr)


def declared(cls: type, base: type, attr: str):
    """The value of ``attr`` that ``cls`` or a plugin class between it and ``base`` declares, else None
    (the base's own default does not count)."""
    for c in cls.__mro__:
        if c is base or c in base.__mro__:
            return None
        if attr in vars(c):
            return vars(c)[attr]
    return None


def _missing_hook(kind: str, cls: type, base: type) -> str | None:
    def own(hook):
        return getattr(cls, hook, None) is not getattr(base, hook, None)

    if kind == "inpainter" and not own("_inpaint"):
        return "_inpaint(image, mask)"
    if kind == "explainer" and not (own("explain") or (own("taps") and own("from_run"))):
        return "explain(clf, x, classes, progress), or taps(clf) with from_run(clf, run, x, classes)"
    if kind == "command" and not own("add_arguments"):
        return "add_arguments(parser)"
    for c in cls.__mro__[1:]:  # a base that asks for one of its hooks (ic_zoo.GradientCAM: weights or cam)
        need = vars(c).get("one_of_hooks")
        if need and not any(getattr(cls, h, None) is not getattr(c, h, None) for h in need):
            return " or ".join(f"{h}(acts, grads)" for h in need)
    return None


def check_declaration(kind: str, name: str, factory: Callable, meta: dict) -> dict:
    """register()'s metadata (``description`` included) merged with what a plugin class declares, checked
    once at registration: a class must subclass its kind's base and implement its hooks; its name is the
    one register() gives (the registry sets it on the object), and a description or cost is declared
    once, on the class or in register(), never both (two copies that agree today drift apart tomorrow). A
    factory function is checked when it makes its object (``Registry.create``)."""
    merged = dict(meta)
    if isinstance(factory, type):
        base = kind_base(kind)
        if not issubclass(factory, base):
            raise PluginContractError(f"{kind} '{name}' is the class {factory.__name__}, which is not an "
                                      f"ic_zoo.{base.__name__}; subclass it")
        hook = _missing_hook(kind, factory, base)
        if hook:
            raise PluginContractError(f"{kind} '{name}' ({factory.__name__}) does not implement {hook}")
        own_name = declared(factory, base, "name")
        if own_name and own_name != name:
            raise PluginContractError(f"{kind} '{name}' is registered under that name, but its class "
                                      f"{factory.__name__} says name = {own_name!r}; use one name")
        if own_name:
            raise PluginContractError(f"{kind} '{name}' declares its name twice, on the class {factory.__name__} "
                                      "and in register(); drop name = ... from the class (the registry sets it)")
        for attr in CLASS_META:
            v = declared(factory, base, attr)
            if v in (None, ""):
                continue
            if merged.get(attr) not in (None, ""):  # even the same value: one place to change it
                raise PluginContractError(f"{kind} '{name}' declares its {attr} twice, {v!r} on the class and "
                                          f"{merged[attr]!r} in register(); declare it once")
            merged[attr] = v
    if kind == "explainer":
        merged.setdefault("cost", "interactive")
        if merged["cost"] not in COSTS:
            raise PluginContractError(f"{kind} '{name}' has cost {merged['cost']!r}; it must be one of "
                                      f"{', '.join(COSTS)}")
    elif "cost" in merged:
        raise PluginContractError(f"{kind} '{name}' declares a cost, which only explainers have (when their maps "
                                  "are made: on every stroke or on demand); say how slow it is in its description")
    return merged


def check_object(spec: "PluginSpec", obj):
    """The object a factory made, held to its spec: an instance of the kind's base, carrying the spec's
    cost and description (the one declaration the app, the CLI and Session all read)."""
    base = kind_base(spec.kind)
    if not isinstance(obj, base):
        raise PluginContractError(f"{spec.kind} '{spec.name}' returned a {type(obj).__name__}, not an "
                                  f"ic_zoo.{base.__name__}; see plugins/README.md")
    cost = spec.meta.get("cost")
    if cost and hasattr(obj, "cost") and obj.cost != cost:
        own = declared(type(obj), base, "cost")
        if own not in (None, ""):
            raise PluginContractError(f"{spec.kind} '{spec.name}' is registered with cost {cost!r} but "
                                      f"its object says {own!r}; declare it once")
        obj.cost = cost
    if spec.description and hasattr(obj, "description") and not obj.description:
        obj.description = spec.description  # (one set in __init__ is the object's own)
    return obj


@dataclass(frozen=True)
class PluginSpec:
    """What the registry knows about one plugin; it can be listed without importing anything heavy."""

    kind: str
    name: str
    factory: Callable[..., Any]
    source: str
    description: str = ""
    requires: tuple[str, ...] = ()
    pip: str = ""
    check: Callable[[], str | None] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_namespace(self) -> bool:
        return self.name.endswith(":")

    def missing_requirement(self) -> str | None:
        """None when every required package is importable, else which one and its pip line."""
        for mod in self.requires:
            if not _importable(mod):
                hint = f"pip install {self.pip}" if self.pip else pip_hint(mod)
                return f"needs the Python package '{mod}' ({hint})"
        return None

    def unavailable_reason(self) -> str | None:
        """None when the plugin can run here, else one sentence saying why not and what to do."""
        missing = self.missing_requirement()
        if missing:
            return missing
        if self.check is not None:
            try:
                return self.check()
            except Exception as exc:  # a check must never take the listing down
                return f"its availability check failed: {exc}"
        return None

    def to_dict(self) -> dict:
        reason = self.unavailable_reason()
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "available": reason is None,
            "reason": reason,
            **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool, type(None)))},
        }


def make_spec(kind: str, name: str, factory: Callable, *, source: str | None = None, description: str = "",
              requires: tuple[str, ...] | list = (), pip: str = "", check: Callable[[], str | None] | None = None,
              **meta: Any) -> PluginSpec:
    """The spec of one registration, checked (:func:`check_declaration`): what :func:`register` and
    :meth:`Registry.register` both build."""
    if kind not in KINDS:
        raise ValueError(f"plugin kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not name or not isinstance(name, str):
        raise ValueError("a plugin needs a non-empty string name")
    merged = check_declaration(kind, name, factory, {**meta, "description": description})
    doc = merged.pop("description") or ((factory.__doc__ or "").strip().splitlines() or [""])[0]
    return PluginSpec(kind, name, factory, source or _default_source(factory), doc, tuple(requires), pip, check,
                      merged)


@dataclass(frozen=True)
class Declaration:
    """One register() call: the spec, whether it may replace another source's, the module that made
    it, and its place in the order of all declarations."""

    spec: PluginSpec
    replace: bool
    module: str
    serial: int


class Catalogue:
    """Every :func:`register` call, by declaring module. A module that is imported again (or a setup
    function called again) re-declares its plugins in place."""

    def __init__(self) -> None:
        self._by_module: dict[str, dict[tuple[str, str], Declaration]] = {}
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._sources: set[str] = {"ic_zoo_plugins"}  # plugin files are always imported by discovery

    def claim(self, prefixes) -> None:
        """Mark modules (names or package prefixes) as plugin sources: their declarations reach a
        registry only through discovery, which merges them when the whole source has loaded."""
        with self._lock:
            self._sources.update(prefixes)

    def is_source(self, module: str) -> bool:
        with self._lock:
            return within(self._sources, module)

    def declare(self, module: str, spec: PluginSpec, replace: bool = False) -> Declaration:
        d = Declaration(spec, replace, module, next(self._serial))
        with self._lock:
            self._by_module.setdefault(module, {})[(spec.kind, spec.name)] = d
        return d

    def modules(self) -> set[str]:
        with self._lock:
            return set(self._by_module)

    def declarations(self, modules) -> list[Declaration]:
        """The declarations of ``modules``, in the order they were made."""
        with self._lock:
            out = [d for m in modules for d in self._by_module.get(m, {}).values()]
        return sorted(out, key=lambda d: d.serial)

    def forget(self, modules) -> None:
        """Drop what ``modules`` declared (a source that failed half-way)."""
        with self._lock:
            for m in modules:
                self._by_module.pop(m, None)


#: Every register() call in this process, by module.
DECLARED = Catalogue()


def within(prefixes, module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


#: Held while a shared plugin object is built (imports, weights): one build at a time per process.
BUILD_LOCK = threading.RLock()


class Registry:
    """Holds plugin specs by (kind, name) and, for shared use, their instances. ``loaded`` is set on the
    process registry once discovery has filled it."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], PluginSpec] = {}
        self._replaces: set[tuple[str, str]] = set()  # added with replace=True: may override on merge
        self._instances: dict[tuple, Any] = {}
        self._lock = threading.RLock()
        self._instance_locks: dict[tuple, threading.Lock] = {}
        self.loaded = False

    # -- registration -------------------------------------------------------------------------
    def register(self, kind: str, name: str, factory: Callable | None = None, *, replace: bool = False, **meta: Any):
        """Register straight into this registry (same keywords as :func:`register`)."""

        def decorate(fn: Callable) -> Callable:
            self.add(make_spec(kind, name, fn, **meta), replace=replace)
            return fn

        return decorate(factory) if factory is not None else decorate

    def _clash(self, spec: PluginSpec, replace: bool) -> None:
        old = self._specs.get((spec.kind, spec.name))
        if old is not None and not replace and old.source != spec.source:
            raise DuplicatePluginError(
                f"{spec.kind} '{spec.name}' from {spec.source} clashes with '{spec.name}' already registered by "
                f"{old.source}; rename one of them or pass replace=True")

    def _put(self, spec: PluginSpec, replace: bool) -> None:
        self._specs[(spec.kind, spec.name)] = spec
        (self._replaces.add if replace else self._replaces.discard)((spec.kind, spec.name))
        self._instances = {k: v for k, v in self._instances.items() if k[:2] != (spec.kind, spec.name)}

    def add(self, spec: PluginSpec, replace: bool = False) -> None:
        """Add one spec; a name another source holds is refused unless ``replace``."""
        with self._lock:
            self._clash(spec, replace)
            self._put(spec, replace)

    def merge(self, other: "Registry") -> None:
        """Add all of ``other``'s specs, or none: a clash is raised before anything is added (a spec
        added to ``other`` with ``replace=True`` may override)."""
        with self._lock, other._lock:
            pairs = [(s, (s.kind, s.name) in other._replaces) for s in other._specs.values()]
        with self._lock:
            for s, rep in pairs:
                self._clash(s, rep)
            for s, rep in pairs:
                self._put(s, rep)

    def unregister(self, kind: str, name: str) -> None:
        with self._lock:
            self._specs.pop((kind, name), None)
            self._replaces.discard((kind, name))
            self._instances = {k: v for k, v in self._instances.items() if k[:2] != (kind, name)}

    # -- lookup -------------------------------------------------------------------------------
    def resolve(self, kind: str, name: str) -> tuple[PluginSpec, str | None]:
        """The spec for ``name`` and, for a namespace entry such as ``timm:``, the rest of the name."""
        with self._lock:
            spec = self._specs.get((kind, name))
            if spec is not None:
                return spec, None
            if ":" in name:
                prefix, rest = name.split(":", 1)
                spec = self._specs.get((kind, prefix + ":"))
                if spec is not None and rest:
                    return spec, rest
        known = ", ".join(sorted(n for (k, n) in self._specs if k == kind)) or "none"
        raise UnknownPluginError(f"there is no {kind} called '{name}'; known: {known}")

    def spec(self, kind: str, name: str) -> PluginSpec:
        return self.resolve(kind, name)[0]

    def __contains__(self, key: tuple[str, str]) -> bool:
        try:
            self.resolve(*key)
            return True
        except UnknownPluginError:
            return False

    def specs(self, kind: str | None = None) -> list[PluginSpec]:
        with self._lock:
            items = list(self._specs.values())
        return sorted((s for s in items if kind is None or s.kind == kind), key=lambda s: (s.kind, s.name))

    def __iter__(self) -> Iterator[PluginSpec]:
        return iter(self.specs())

    # -- construction -------------------------------------------------------------------------
    def create(self, kind: str, name: str, **kwargs: Any) -> Any:
        """A new plugin object. Raises PluginUnavailableError with the fix when it cannot run here."""
        spec, rest = self.resolve(kind, name)
        reason = spec.missing_requirement()
        if reason:
            raise PluginUnavailableError(f"{kind} '{name}' is unavailable: {reason}")
        try:
            obj = spec.factory(rest, **kwargs) if rest is not None else spec.factory(**kwargs)
        except IcZooError:
            raise
        except (TypeError, ValueError) as exc:  # a parameter the factory refused: one sentence, named
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no parameters"
            why = str(exc).strip().rstrip(".") or type(exc).__name__
            raise InputError(f"The {kind} '{name}' cannot be made with {given}: {why}.") from None
        if hasattr(obj, "name") and not getattr(obj, "name", None):
            obj.name = name
        return check_object(spec, obj)

    @staticmethod
    def _instance_key(kind: str, name: str, kwargs: Mapping[str, Any]) -> tuple:
        return (kind, name, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))

    def has_instance(self, kind: str, name: str, **kwargs: Any) -> bool:
        """Whether :meth:`instance` would return an object already built (no load)."""
        with self._lock:
            return self._instance_key(kind, name, kwargs) in self._instances

    def instance(self, kind: str, name: str, **kwargs: Any) -> Any:
        """A shared object for (kind, name, kwargs), created once even when asked from many threads. Objects
        are built one at a time in the process (:data:`BUILD_LOCK`): two first events building two models
        at once imported torchvision's model modules from two threads and died on Python's "deadlock
        detected by _ModuleLock" (issue 33); an object already built is returned without waiting."""
        key = self._instance_key(kind, name, kwargs)
        with self._lock:
            if key in self._instances:
                return self._instances[key]
            lock = self._instance_locks.setdefault(key, threading.Lock())
        with BUILD_LOCK, lock:  # BUILD_LOCK first: a factory that asks for another instance re-enters it
            with self._lock:
                if key in self._instances:
                    return self._instances[key]
            obj = self.create(kind, name, **kwargs)
            with self._lock:
                self._instances[key] = obj
            return obj

    def clear_instances(self) -> None:
        with self._lock:
            self._instances.clear()


#: The process-wide registry: discovery fills it (``ic_zoo.discovery.ensure_loaded``).
REGISTRY = Registry()


def register(kind: str, name: str, factory: Callable | None = None, *, replace: bool = False, **meta: Any):
    """Declare a plugin factory; usable as a decorator or a plain call.

    Keywords: ``description``, ``requires`` (importable module names), ``pip`` (install line if one
    is missing), ``check`` (callable returning None or a reason it cannot run), and any metadata
    (e.g. ``cost="slow"`` for explainers). The declaration is checked now (one sentence if it breaks
    the contract). A plugin module's declarations reach the process registry when discovery loads that
    module; anyone else's (a script, a notebook) as soon as it is made, once the registry is loaded. A
    name already taken raises DuplicatePluginError naming both sources, unless ``replace=True``.
    """
    module = sys._getframe(1).f_globals.get("__name__", "") or ""  # the declaring module (as warnings does)

    def decorate(fn: Callable) -> Callable:
        spec = make_spec(kind, name, fn, **meta)
        if module == "__main__" or not module.startswith("ic_zoo."):
            spec = dataclasses.replace(spec, source=module or spec.source)
        DECLARED.declare(module, spec, replace)
        if REGISTRY.loaded and not DECLARED.is_source(module):
            REGISTRY.add(spec, replace=replace)
        return fn

    return decorate(factory) if factory is not None else decorate
