"""One plugin contract, tested two ways (issue 14).

* Over the whole registry, like timm's ``test_models.py``: every registered plugin of every kind, the
  built-ins and the shipped examples, goes through its kind's contract checks.
* As ``plugins/README.md`` says: each of its code blocks is loaded exactly as written (the blocks of the
  shipped examples must be those files) and used in the app, the CLI and ``Session``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import hooks, slow_except

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
import ic_zoo  # noqa: E402
from ic_zoo import Classifier, Command, Explainer, Inpainter, cli  # noqa: E402
from ic_zoo.errors import InputError  # noqa: E402
from ic_zoo.zoo import resolve_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "plugins" / "README.md").read_text()
BLOCKS = dict(re.findall(r"```python\n# plugins/(\S+)\n(.*?)```", README, re.S))
#: a name to try for each namespace entry
NAMESPACE_EXAMPLE = {"timm:": "timm:resnet18", "torchvision:": "torchvision:resnet18"}

ic_zoo.ensure_loaded()
SPECS = ic_zoo.list_plugins()


def _ids(kind):
    return [s.name for s in SPECS if s.kind == kind]


def _one_sentence(text: str) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text


def _photo_like(h=180, w=240, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 9.0)], -1) * 200
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


# -- every plugin in the registry ---------------------------------------------------------------------
def test_the_registry_holds_every_kind_and_no_source_failed():
    kinds = {s.kind for s in SPECS}
    assert kinds == set(ic_zoo.registry.KINDS)
    assert not ic_zoo.ensure_loaded().failed, ic_zoo.ensure_loaded().summary()
    for s in SPECS:
        assert s.description, f"{s.kind} {s.name} has no description"
        assert (s.meta.get("cost") in ("interactive", "slow")) == (s.kind == "explainer")


@pytest.mark.parametrize("name", slow_except(_ids("classifier"), *[n for n in _ids("classifier") if not n.startswith("vit_base")]))
def test_classifier_contract(name):
    spec = ic_zoo.get_spec("classifier", name)
    if spec.is_namespace:
        if name not in NAMESPACE_EXAMPLE:
            with pytest.raises(ic_zoo.IcZooError) as info:  # hf-hub: a bad id is one sentence
                resolve_model(name + "not a repo id")
            assert _one_sentence(str(info.value))
            return
        name = NAMESPACE_EXAMPLE[name]
    clf = ic_zoo.create("classifier", name, pretrained=False, device="cpu")
    assert isinstance(clf, Classifier) and clf.name == name
    assert clf.family in ("cnn", "vit") and (clf.reshape_transform is not None) == (clf.family == "vit")
    image = _photo_like()
    x = clf.preprocess(image)
    assert tuple(x.shape) == (1, 3, *clf.input_size)
    pred = clf.predict(image)
    assert len(pred.logits) == clf.num_classes == len(clf.labels)
    assert abs(float(pred.probs.sum()) - 1) < 1e-3 and len(pred.topk(5)) == min(5, clf.num_classes)
    x0, y0, x1, y1 = clf.input_box(image.shape)
    assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
    modules = {id(m) for m in clf.model.modules()}
    assert clf.target_layers and all(id(t) in modules for t in clf.target_layers)
    with clf.lock:
        run = clf.run(x, clf.target_layers)
        acts = run.acts[0] if clf.reshape_transform is None else clf.reshape_transform(run.acts[0])
        assert acts.ndim == 4 and acts.shape[-1] > 1
        grads = run.grads([0, 1])
        assert grads and grads[0].shape[0] == 2
    assert hooks(clf.model) == 0 and not any(p.requires_grad for p in clf.model.parameters())
    head = clf.cam_head()
    if head is not None:
        with clf.lock:
            r = clf.run(x, [head.layer], grad=False, use_input=[head.use_input])
            maps = head.to_maps(r.acts[0], [0, 1])
        assert maps.shape[:2] == (1, 2) and maps.ndim == 4
    np.testing.assert_allclose(clf.prediction(run.logits).probs, pred.probs, atol=1e-4)


@pytest.mark.parametrize("name", _ids("inpainter"))
def test_inpainter_contract(name):
    spec = ic_zoo.get_spec("inpainter", name)
    reason = spec.unavailable_reason()
    if reason is not None:
        assert _one_sentence(reason)
        with pytest.raises(ic_zoo.IcZooError) as info:
            ic_zoo.create("inpainter", name).inpaint(_photo_like(48, 64), np.ones((48, 64), bool))
        assert _one_sentence(str(info.value))
        return
    inp = ic_zoo.create("inpainter", name)
    assert isinstance(inp, Inpainter) and "cost" not in spec.meta
    image = _photo_like(48, 64)
    mask = np.zeros((48, 64), bool)
    mask[14:30, 20:44] = True
    out = inp.inpaint(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], image[~mask])  # unmasked pixels untouched
    assert not np.array_equal(out[mask], image[mask])  # the region is replaced
    assert np.array_equal(inp.inpaint(image, np.zeros_like(mask)), image)
    if inp.needs_context:
        with pytest.raises(InputError) as info:
            inp.inpaint(image, np.ones_like(mask))
        assert _one_sentence(str(info.value))


@pytest.fixture(scope="module")
def flower_models():
    return {m: ic_zoo.instance("classifier", m, pretrained=True, device="cpu")
            for m in ("flower2d/resnet", "flower2d/vit")}


@pytest.mark.parametrize("name", _ids("explainer"))
def test_explainer_contract(name, flower_models):
    from ic_zoo.flower2d import generator as g

    spec = ic_zoo.get_spec("explainer", name)
    ex = ic_zoo.create("explainer", name)
    assert isinstance(ex, Explainer) and ex.cost == spec.meta["cost"] and ex.name == name
    image, _ = g.render(g.sample_params("double-12c", 0, "test", 7001), 64)
    ran = 0
    for key, clf in flower_models.items():
        why = ex.supports(clf)
        if why is not None:
            assert _one_sentence(why)
            continue
        x = clf.preprocess(image)
        seen = []
        out = ex.explain(clf, x, [0, 3], progress=lambda f, msg: seen.append(f))
        h, w = clf.input_size
        assert out.raw.shape == out.normalized.shape == (2, h, w), key
        assert np.isfinite(out.raw).all() and (out.raw >= 0).all()
        assert out.normalized.min() >= 0 and out.normalized.max() <= 1 + 1e-6
        assert seen == sorted(seen)  # progress never goes backwards
        assert hooks(clf.model) == 0 and not any(p.requires_grad for p in clf.model.parameters())
        ran += 1
    assert ran, f"{name} supports neither a CNN nor a ViT"


@pytest.mark.parametrize("name", _ids("command"))
def test_command_contract(name, capsys):
    cmd = ic_zoo.create("command", name)
    assert isinstance(cmd, Command)
    parser = argparse.ArgumentParser(prog=f"python -m ic_zoo {name}")
    cmd.add_arguments(parser)
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0 and ic_zoo.get_spec("command", name).description in capsys.readouterr().out


# -- the plugins of plugins/README.md, exactly as written ---------------------------------------------------
def test_the_readme_shows_one_plugin_of_each_kind_and_the_shipped_examples_as_they_are():
    kinds = {m.group(1) for code in BLOCKS.values() if (m := re.search(r'@register\("(\w+)"', code))}
    assert kinds == set(ic_zoo.registry.KINDS)
    assert any("@register_question_type" in code for code in BLOCKS.values())  # and a study question type
    for file, code in BLOCKS.items():
        shipped = ROOT / "plugins" / file
        if shipped.is_file():
            assert code.strip() in shipped.read_text(), f"plugins/README.md's {file} differs from the file"


@pytest.fixture(scope="module")
def readme_plugins(tmp_path_factory):
    """The README's classifier and command, saved as it says (with weights made here), discovered into
    the process registry the way the app's plugins folder is."""
    import torch
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    folder = tmp_path_factory.mktemp("readme_plugins")
    for file, code in BLOCKS.items():
        if not (ROOT / "plugins" / file).is_file():
            (folder / file).write_text(code)
    torch.manual_seed(0)
    save_file(resnet18(num_classes=5).state_dict(), str(folder / "my_resnet18.safetensors"))
    (folder / "checkpoints").mkdir()  # the namespace's folder: one checkpoint, ckpt:flowers_v2
    save_file(resnet18(num_classes=3).state_dict(), str(folder / "checkpoints" / "flowers_v2.safetensors"))
    (folder / "checkpoints" / "flowers_v2.json").write_text(json.dumps(["daisy", "rose", "tulip"]))
    report = ic_zoo.discover(ic_zoo.REGISTRY, builtins=False, entry_points=False, plugins_dir=folder)
    assert not report.failed, report.summary()
    yield folder
    for kind, name in (("classifier", "my-resnet18"), ("classifier", "ckpt:"), ("command", "hello")):
        ic_zoo.REGISTRY.unregister(kind, name)
    from ic_zoo.study.questions import QUESTION_TYPES

    QUESTION_TYPES.pop("yes-no", None)


def test_readme_question_type_in_a_study_file(readme_plugins, tmp_path):
    from PIL import Image

    from ic_zoo.study.definition import StudyError, load_study

    Image.fromarray(_photo_like()).save(tmp_path / "f.png")
    (tmp_path / "s.yaml").write_text("title: T\ntasks: [{id: a, image: f.png, models: [my-resnet18], questions: "
                                     "[{id: q, text: 'Did it change?', type: yes-no, expected: 'yes'}]}]\n")
    q = load_study(tmp_path / "s.yaml").tasks[0].questions[0]
    assert q.kind.choices(q) == ["yes", "no"] and q.kind.correct(q, "yes") and q.kind.value(q, "no") == 0
    assert q.kind.refusal(q, "maybe") == "Please answer yes or no: Did it change?"
    assert q.kind.summary(q, ["yes", None, "no"])["n"] == 2
    (tmp_path / "s.yaml").write_text((tmp_path / "s.yaml").read_text().replace("expected: 'yes'", "expected: 'sure'"))
    with pytest.raises(StudyError, match="expects 'sure', which is not one of its answers"):
        load_study(tmp_path / "s.yaml")


LABELS = {"daisy", "dandelion", "rose", "sunflower", "tulip"}


def test_readme_plugins_in_session(readme_plugins):
    image = _photo_like()
    mask = np.zeros(image.shape[:2], bool)
    mask[40:120, 60:180] = True
    s = ic_zoo.Session(image)
    s.apply(mask, inpainter="pixelate")
    assert np.array_equal(s.modified[~mask], image[~mask]) and not np.array_equal(s.modified[mask], image[mask])
    res = s.evaluate(["my-resnet18"], explainer="counterfactual-gradcam")
    r = res.models["my-resnet18"]
    assert {c.label for c in r.original} == LABELS and r.maps
    cm = s.explain("my-resnet18", r.original[0].index, "counterfactual-gradcam")
    assert cm.original.shape == image.shape[:2] and np.isfinite(cm.original).all()
    assert ic_zoo.get_spec("classifier", "my-resnet18").source == str(readme_plugins / "my_resnet18.py")
    # the namespace: any checkpoint of its folder by name, and one sentence for a name it does not have
    r = s.evaluate(["ckpt:flowers_v2"], explainer="gradcam").models["ckpt:flowers_v2"]
    assert {c.label for c in r.original} == {"daisy", "rose", "tulip"} and r.maps
    with pytest.raises(ic_zoo.InputError, match="there is no checkpoint 'nothing' in checkpoints/"):
        s.evaluate(["ckpt:nothing"])


def test_readme_plugins_in_the_cli(readme_plugins, tmp_path, capsys):
    from PIL import Image

    from ic_zoo import cli

    image = _photo_like()
    Image.fromarray(image).save(tmp_path / "photo.png")
    m = np.zeros(image.shape[:2], np.uint8)
    m[40:120, 60:180] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    assert cli.main(["hello", "--name", "tester"]) == 0
    assert capsys.readouterr().out.strip() == "hello tester"
    assert cli.main(["classify", "--model", "my-resnet18", "--json", str(tmp_path / "photo.png")]) == 0
    top = json.loads(capsys.readouterr().out.splitlines()[0])
    assert top["model"] == "my-resnet18" and {t["label"] for t in top["top5"]} == LABELS
    assert cli.main(["edit", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "--inpainter",
                     "pixelate", "--explainer", "counterfactual-gradcam", "-m", "my-resnet18",
                     "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["inpainter"] == "pixelate" and list(result["models"]) == ["my-resnet18"]
    capsys.readouterr()
    assert cli.main(["list", "--json"]) == 0
    listed = {(p["kind"], p["name"]): p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert listed[("classifier", "my-resnet18")]["available"] and ("command", "hello") in listed


def test_readme_plugins_in_the_app(readme_plugins):
    from gradio_client import Client, handle_file
    from PIL import Image

    import app as app_module
    from ic_zoo.app.main.context import classifier_choices, explainer_choices, inpainter_choices

    assert "my-resnet18" in [v for _, v in classifier_choices()]
    assert "pixelate" in [v for _, v in inpainter_choices()[0]]
    assert "counterfactual-gradcam" in [v for _, v in explainer_choices()]
    image = _photo_like()
    path = readme_plugins / "photo.png"
    Image.fromarray(image).save(path)
    layer = np.zeros(image.shape[:2] + (4,), np.uint8)
    layer[40:120, 60:180] = (255, 0, 0, 255)
    Image.fromarray(layer).save(readme_plugins / "stroke.png")
    demo = app_module.build_demo(models=["my-resnet18"])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        c = Client(url, verbose=False)
        out = c.predict({"background": handle_file(str(path)), "layers": [handle_file(str(readme_plugins / "stroke.png"))],
                         "composite": None}, ["my-resnet18"], "pixelate", "counterfactual-gradcam",
                        app_module.ROWS[0], api_name="/edit")
        r = out[-1]
        assert r["n_edits"] == 1 and list(r["models"]) == ["my-resnet18"]
        assert {t["label"] for t in r["models"]["my-resnet18"]["modified"]["top5"]} == LABELS
    finally:
        demo.close()


def test_a_classifier_is_checked_when_it_is_built():
    import torch
    from torchvision import transforms as T

    from ic_zoo import InputGeometry, PluginContractError

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    elsewhere = torch.nn.Conv2d(3, 4, 3)
    tf = T.Compose([T.Resize((32, 32)), T.ToTensor(), T.Normalize((0.5,) * 3, (0.25,) * 3)])
    with pytest.raises(PluginContractError, match="needs target layers that are modules of its model"):
        Classifier(model, ["a", "b"], tf, InputGeometry((32, 32), None), [elsewhere], name="t")
    with pytest.raises(PluginContractError, match="has no class labels"):
        Classifier(model, [], tf, InputGeometry((32, 32), None), [model[0]], name="t")
    clf = Classifier(model, ["a", "b"], tf, InputGeometry((32, 32), None), [model[0]], name="t", device="cpu")
    assert clf.norm == ((0.5,) * 3, (0.25,) * 3)  # read off the transform's Normalize
    assert clf.family == "cnn" and not model.training and not any(p.requires_grad for p in model.parameters())
    assert clf.cached("thing", lambda: [1]) is clf.cached("thing", lambda: [2])


def test_the_package_has_no_import_cycle():
    """The imports between ic_zoo's modules, lazy ones inside functions included, form no cycle
    (before: registry and discovery imported each other)."""
    import ast

    pkg = ROOT / "ic_zoo"
    graph = {}
    for path in pkg.rglob("*.py"):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = mod.split(".")[: len(mod.split(".")) - node.level + (path.name == "__init__.py")]
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {target} | {f"{target}.{a.name}" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ic_zoo"):
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("ic_zoo")}
        graph[mod] = deps
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    assert "ic_zoo.discovery" not in graph["ic_zoo.registry"]

    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_an_explainer_plugin_needs_no_private_import():
    """Everything the explainer contract names is public: the base, the tap spec, the output and the two
    helpers the built-ins use to make raw and normalised maps."""
    import ic_zoo
    from ic_zoo.explainers import _base

    for name in ("Explainer", "TapSpec", "ExplainOutput", "resize_maps", "normalize_like_library", "GradientCAM"):
        assert name in ic_zoo.__all__ and getattr(ic_zoo, name) is not None
    assert ic_zoo.TapSpec is _base.TapSpec and ic_zoo.resize_maps is _base.resize_maps


def test_the_error_contract_has_no_holes():
    """Issue 37 item 4: "no edit yet" is a state error of its own (not a MaskError), an image an inpainter
    cannot take is a BadImageError, and the explainers' optional hooks are declared on their base class."""
    import numpy as np

    import ic_zoo
    from ic_zoo.analyses.inpainter_check import inpainter_check
    from ic_zoo.errors import BadImageError, InputError, MaskError, NoEditError
    from ic_zoo.explainers._base import Explainer

    s = ic_zoo.Session(_photo_like(), pretrained=False)
    with pytest.raises(NoEditError, match="There is no edit to check yet") as info:
        inpainter_check(s, ["flower2d/squeezenet"])
    assert not isinstance(info.value, InputError)
    with pytest.raises(BadImageError) as info:
        ic_zoo.create("inpainter", "telea").inpaint(np.zeros((8, 8), np.float32), np.ones((8, 8), bool))
    assert not isinstance(info.value, MaskError)
    assert Explainer.last_passes is None and not Explainer().contrasts()
    assert ic_zoo.create("explainer", "gradcam").contrasts()
    assert ic_zoo.create("explainer", "occlusion").last_passes == 0  # counted by the one that counts
