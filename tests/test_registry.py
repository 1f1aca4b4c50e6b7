"""The plugin registry and discovery: one decorator, three sources, failures reported, never raised."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import ic_zoo
from ic_zoo.discovery import discover
from ic_zoo.errors import DuplicatePluginError, PluginUnavailableError, UnknownPluginError
from ic_zoo import Inpainter
from ic_zoo.registry import Registry


class Tagged(Inpainter):
    """The smallest inpainter (keeps the image): the registry's mechanics are tested with it."""

    def __init__(self, *tag, **kw):
        super().__init__()
        self.tag = tag + ((kw,) if kw else ())

    def _inpaint(self, image, mask):
        return image

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = ("import sys, ic_zoo; heavy = [m for m in ('torch', 'cv2', 'timm', 'transformers', 'gradio', "
            "'pytorch_grad_cam', 'skimage') if m in sys.modules]; print(heavy); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_listing_plugins_imports_no_model_library():
    code = ("import sys, ic_zoo; ic_zoo.list_plugins(); heavy = [m for m in ('torch', 'timm', 'transformers', "
            "'gradio', 'pytorch_grad_cam') if m in sys.modules]; assert not heavy, heavy")
    env = dict(os.environ, IC_ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def test_register_decorator_and_namespace():
    reg = Registry()

    @reg.register("inpainter", "a", description="first")
    def make_a(**kw):
        return Tagged("a", **kw)

    reg.register("inpainter", "ns:", lambda rest, **kw: Tagged("ns", rest, **kw))
    assert reg.create("inpainter", "a", x=1).tag == ("a", {"x": 1})
    assert reg.create("inpainter", "ns:foo/bar", pretrained=False).tag == ("ns", "foo/bar", {"pretrained": False})
    assert reg.spec("inpainter", "a").description == "first"
    with pytest.raises(UnknownPluginError, match="no inpainter called 'b'.*known: a"):
        reg.create("inpainter", "b")
    with pytest.raises(ValueError):
        reg.register("widget", "x", make_a)


def test_duplicate_names_both_sources_unless_replace():
    reg = Registry()
    reg.register("inpainter", "dup", lambda: Tagged(1), source="pkg_one")
    with pytest.raises(DuplicatePluginError) as info:
        reg.register("inpainter", "dup", lambda: Tagged(2), source="plugins/two.py")
    assert "pkg_one" in str(info.value) and "plugins/two.py" in str(info.value) and "replace=True" in str(info.value)
    reg.register("inpainter", "dup", lambda: Tagged(3), source="plugins/two.py", replace=True)
    assert reg.create("inpainter", "dup").tag == (3,)


def test_missing_requirement_gives_pip_line():
    reg = Registry()
    reg.register("inpainter", "needs", lambda: 1, requires=("no_such_module_xyz",), pip="xyz-package")
    reason = reg.spec("inpainter", "needs").unavailable_reason()
    assert "pip install xyz-package" in reason
    with pytest.raises(PluginUnavailableError, match="pip install xyz-package"):
        reg.create("inpainter", "needs")


def test_a_module_being_imported_by_another_thread_counts_as_present(monkeypatch):
    """A module in sys.modules with no __spec__ (what another thread's import in progress
    leaves there, as OpenCV's loader does for cv2) made find_spec raise ValueError, and the
    plugin was declared missing: a restarted study app refused its inpainter (CI, kill -9 test)."""
    import types
    half = types.ModuleType("ic_zoo_half_imported_xyz")
    half.__spec__ = None
    monkeypatch.setitem(sys.modules, "ic_zoo_half_imported_xyz", half)
    with pytest.raises(ValueError):  # the failure mode, as Python has it
        import importlib.util
        importlib.util.find_spec("ic_zoo_half_imported_xyz")
    reg = Registry()
    reg.register("inpainter", "half", lambda: 1, requires=("ic_zoo_half_imported_xyz",))
    assert reg.spec("inpainter", "half").unavailable_reason() is None
    reg.register("inpainter", "gone", lambda: 1, requires=("ic_zoo_no_such_module_xyz",))
    assert "ic_zoo_no_such_module_xyz" in reg.spec("inpainter", "gone").unavailable_reason()


def test_instance_is_created_once_across_threads():
    reg = Registry()
    calls = []

    def factory(**kw):
        calls.append(1)
        return Tagged()

    reg.register("inpainter", "once", factory)
    out = []
    threads = [threading.Thread(target=lambda: out.append(reg.instance("inpainter", "once", p=1))) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 1 and len({id(o) for o in out}) == 1
    assert reg.instance("inpainter", "once", p=2) is not out[0]


def _write(folder: Path, name: str, body: str) -> Path:
    p = folder / name
    p.write_text(textwrap.dedent(body))
    return p


def test_folder_plugins_load_and_failures_are_reported(tmp_path):
    _write(tmp_path, "a_good.py", """
        from ic_zoo import Inpainter, register
        class Good(Inpainter):
            def _inpaint(self, image, mask):
                return image
        @register("inpainter", "good_one", description="ok")
        def make(**kw):
            return Good()
    """)
    _write(tmp_path, "missing_dep.py", """
        import definitely_not_installed_pkg
    """)
    _write(tmp_path, "half.py", """
        from ic_zoo import register
        register("inpainter", "half_registered", lambda: 1)
        raise RuntimeError("boom after registering")
    """)
    _write(tmp_path, "z_clash.py", """
        from ic_zoo import register
        register("inpainter", "good_one", lambda: 2)
    """)
    _write(tmp_path, "syntax.py", "def broken(:\n")
    reg = Registry()
    report = discover(reg, builtins=False, entry_points=False, plugins_dir=tmp_path)
    by = {Path(r.source).name: r for r in report.records}
    assert by["a_good.py"].ok and by["a_good.py"].registered == ["inpainter:good_one"]
    assert type(reg.create("inpainter", "good_one")).__name__ == "Good"
    assert not by["missing_dep.py"].ok
    assert "definitely_not_installed_pkg" in by["missing_dep.py"].error
    assert "pip install definitely_not_installed_pkg" in by["missing_dep.py"].error
    assert not by["half.py"].ok and "boom after registering" in by["half.py"].error
    assert ("inpainter", "half_registered") not in reg  # rolled back
    clash = by["z_clash.py"]
    assert not clash.ok and "a_good.py" in clash.error and "clash.py" in clash.error
    assert type(reg.create("inpainter", "good_one")).__name__ == "Good"  # the first one survives the clash
    assert not by["syntax.py"].ok and "SyntaxError" in by["syntax.py"].error
    assert "4 failed" in report.summary() or len(report.failed) == 4


def test_entry_point_plugins(tmp_path, monkeypatch):
    pkg = tmp_path / "ep_plugin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from ic_zoo import Explainer, register
        class FromEntryPoint(Explainer):
            def explain(self, clf, x, classes, progress=None):
                raise NotImplementedError
        def setup():
            register("explainer", "ep_explainer", FromEntryPoint)
    """))
    dist = tmp_path / "ep_plugin_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ic_zoo.plugins]\nmine = ep_plugin_pkg:setup\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    report = discover(reg, builtins=False, entry_points=True, plugins_dir=False)
    rec = [r for r in report.records if r.origin == "entry point"]
    assert rec and rec[0].ok, report.summary()
    assert "ep-plugin-pkg" in rec[0].source
    assert type(reg.create("explainer", "ep_explainer")).__name__ == "FromEntryPoint"


def test_autoload_switch(tmp_path, monkeypatch):
    _write(tmp_path, "p.py", "from ic_zoo import register\nregister('inpainter', 'auto_p', lambda: 1)\n")
    monkeypatch.setenv("IC_ZOO_PLUGINS_DIR", str(tmp_path))
    monkeypatch.setenv("IC_ZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = Registry()
    discover(reg, builtins=False)
    assert ("inpainter", "auto_p") not in reg
    monkeypatch.delenv("IC_ZOO_DISABLE_PLUGIN_AUTOLOAD")
    reg = Registry()
    discover(reg, builtins=False)
    assert ("inpainter", "auto_p") in reg


def test_shipped_example_plugin_is_loaded_by_default():
    report = ic_zoo.ensure_loaded()
    rec = [r for r in report.records if r.source.endswith("pixelate.py")]
    assert rec and rec[0].ok and rec[0].registered == ["inpainter:pixelate"]
    assert not report.failed, report.summary()
    spec = ic_zoo.get_spec("inpainter", "pixelate")
    assert spec.source.endswith("plugins/pixelate.py")


def test_builtins_cover_the_three_kinds():
    names = {(s.kind, s.name) for s in ic_zoo.list_plugins()}
    for key in [("classifier", "squeezenet1_1"), ("classifier", "resnet50.a1_in1k"),
                ("classifier", "vit_base_patch16_224.augreg2_in21k_ft_in1k"),
                ("classifier", "vit_small_patch16_224.augreg_in21k_ft_in1k"), ("classifier", "timm:"),
                ("classifier", "hf-hub:"), ("inpainter", "telea"), ("inpainter", "ns"), ("inpainter", "patchmatch"),
                ("inpainter", "lama"), ("inpainter", "blur"), ("inpainter", "mean_fill"), ("explainer", "cam"),
                ("explainer", "gradcam"), ("explainer", "gradcam++"), ("explainer", "hirescam"),
                ("explainer", "xgradcam"), ("explainer", "layercam"), ("explainer", "eigencam"),
                ("explainer", "scorecam"), ("explainer", "ablationcam"), ("explainer", "fullgrad")]:
        assert key in names, key
    costs = {s.name: s.meta.get("cost") for s in ic_zoo.list_plugins("explainer")}
    assert costs["scorecam"] == costs["ablationcam"] == costs["fullgrad"] == "slow"
    assert costs["gradcam"] == costs["cam"] == "interactive"


@pytest.mark.slow
def test_plugins_never_load_from_the_working_directory(tmp_path):
    """Before: `python -m ic_zoo list` (and study mode) imported ./plugins/*.py from the current folder,
    so starting it inside a folder someone else can write ran their code."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    work = tmp_path / "somebody_elses_folder"
    (work / "plugins").mkdir(parents=True)
    marker = tmp_path / "ran.txt"
    (work / "plugins" / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from ic_zoo import register, Inpainter\n"
        "@register('inpainter', 'evil')\n"
        "class Evil(Inpainter):\n    def _inpaint(self, image, mask):\n        return image\n")
    env = {k: v for k, v in os.environ.items() if k not in ("IC_ZOO_PLUGINS_DIR", "IC_ZOO_DISABLE_PLUGIN_AUTOLOAD")}
    env["PYTHONPATH"] = str(root)

    def names(*extra):
        out = subprocess.run([sys.executable, "-m", "ic_zoo", *extra, "list", "--kind", "inpainter", "--json"],
                             cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return {p["name"] for p in json.loads(out.stdout)["plugins"]}

    found = names()
    assert "evil" not in found and not marker.exists()
    assert "pixelate" in found  # the app's own plugins/ folder still loads
    study = subprocess.run([sys.executable, "-m", "ic_zoo", "study", "check",
                            str(root / "examples" / "study" / "flower_study.yaml")],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert study.returncode == 0, study.stderr
    assert not marker.exists()
    # named explicitly, the folder loads (and its code runs): that is the operator's choice
    assert "evil" in names("--plugins-dir", str(work / "plugins")) and marker.exists()


# -- one plugin contract: metadata declared once, checked at registration (issue 14) ---------------------
def test_an_explainer_declared_as_plugins_readme_says_is_slow_everywhere(capsys):
    """Before: `cost = "slow"` on the class (as plugins/README.md says) reached Session but not the app
    or the CLI, which read only register(..., cost=): the explainer ran on every stroke there."""
    import numpy as np

    from ic_zoo import Explainer, cli
    from ic_zoo.presentation import present
    from ic_zoo.explainers._base import ExplainOutput
    from ic_zoo.app.main.context import explainer_choices

    @ic_zoo.register("explainer", "t_centre_slow")
    class CentreSlow(Explainer):
        cost = "slow"
        description = "a centred blob (a test)"

        def supports(self, clf):
            return None

        def explain(self, clf, x, classes, progress=None):
            h, w = x.shape[-2:]
            yy, xx = np.mgrid[:h, :w]
            blob = np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (0.1 * h * w)).astype(np.float32)
            maps = np.stack([blob] * len(classes))
            return ExplainOutput(maps, maps / maps.max())

    try:
        spec = ic_zoo.get_spec("explainer", "t_centre_slow")
        assert spec.meta["cost"] == "slow" and spec.description == "a centred blob (a test)"
        assert ic_zoo.instance("explainer", "t_centre_slow").cost == "slow"
        assert ("t_centre_slow (slow)", "t_centre_slow") in explainer_choices()  # the app's picker
        assert present.interactive_explainer("t_centre_slow")[0] == "gradcam"  # not run on every stroke
        cli.main(["list", "--kind", "explainer"])
        line = next(ln for ln in capsys.readouterr().out.splitlines() if "t_centre_slow" in ln)
        assert line.rstrip().endswith("[slow]")
        s = ic_zoo.Session(np.full((64, 64, 3), 128, np.uint8), pretrained=False)
        cm = s.explain("flower2d/squeezenet", 0, "t_centre_slow")  # the slow path, as Slow maps run it
        assert cm.explainer == "t_centre_slow" and cm.original.shape == (64, 64)
    finally:
        ic_zoo.REGISTRY.unregister("explainer", "t_centre_slow")


def test_a_cost_given_only_to_register_reaches_the_object():
    from ic_zoo import Explainer

    reg = Registry()

    @reg.register("explainer", "kw_slow", cost="slow", description="keyword only")
    class KwSlow(Explainer):
        def explain(self, clf, x, classes, progress=None):
            raise NotImplementedError

    obj = reg.create("explainer", "kw_slow")
    assert obj.cost == "slow" and obj.description == "keyword only"
    assert reg.spec("explainer", "kw_slow").meta["cost"] == "slow"


def test_registration_refuses_a_plugin_that_breaks_its_contract():
    from ic_zoo import Explainer
    from ic_zoo.errors import PluginContractError

    reg = Registry()

    class Twice(Explainer):
        cost = "slow"

        def explain(self, clf, x, classes, progress=None):
            return None

    class NoHook(Explainer):
        pass

    class Named(Tagged):
        name = "something_else"

    cases = [
        (lambda: reg.register("explainer", "twice", Twice, cost="interactive"),
         "declares its cost twice, 'slow' on the class and 'interactive' in register(); declare it once"),
        (lambda: reg.register("explainer", "nohook", NoHook), "does not implement explain("),
        (lambda: reg.register("explainer", "wrongbase", Tagged), "which is not an ic_zoo.Explainer; subclass it"),
        (lambda: reg.register("inpainter", "named", Named), "says name = 'something_else'; use one name"),
        (lambda: reg.register("inpainter", "something_else", Named),
         "declares its name twice, on the class Named and in register(); drop name = ... from the class"),
        (lambda: reg.register("explainer", "badcost", Twice, cost="sometimes"), "declares its cost twice"),
        (lambda: reg.register("explainer", "same_twice", Twice, cost="slow"),
         "declares its cost twice, 'slow' on the class and 'slow' in register(); declare it once"),
        (lambda: reg.register("explainer", "badcost2", lambda: Tagged(), cost="sometimes"),
         "has cost 'sometimes'; it must be one of interactive, slow"),
        (lambda: reg.register("inpainter", "slowfill", lambda: Tagged(), cost="slow"),
         "declares a cost, which only explainers have"),
    ]
    for call, sentence in cases:
        with pytest.raises(PluginContractError) as info:
            call()
        assert sentence in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert reg.specs() == []  # nothing refused was registered
    reg.register("inpainter", "liar", lambda: "not an inpainter")
    with pytest.raises(PluginContractError, match="returned a str, not an ic_zoo.Inpainter; see plugins/README.md"):
        reg.create("inpainter", "liar")
