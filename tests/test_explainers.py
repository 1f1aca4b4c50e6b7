"""Explainers: pytorch-grad-cam's maps, from one forward pass and target-layer-only gradients.

Equal to the library's usual per-class call within 1e-4, for a CNN with a 1x1-conv head
(SqueezeNet), a ResNet and ViTs (timm and transformers); hooks always released; concurrent calls on
one model never mix."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import hooks, slow_except
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import ic_zoo
from ic_zoo.explainers.cam_methods import FAST_METHODS

MODELS = ["squeezenet1_1", "timm:resnet18", "timm:vit_tiny_patch16_224"]


@pytest.fixture(scope="module")
def models():
    out = {}
    for name in MODELS:
        torch.manual_seed(0)
        clf = ic_zoo.create("classifier", name, pretrained=False, device="cpu")
        for m in clf.model.modules():  # random BN scales so maps are not degenerate
            if isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
        out[name] = clf
    return out


def _library_maps(clf, method_class, x, classes):
    import pytorch_grad_cam

    cam = getattr(pytorch_grad_cam, method_class)(model=clf.logits_module(), target_layers=clf.target_layers,
                                                  reshape_transform=clf.reshape_transform)
    try:
        with clf.unfrozen():
            return np.stack([cam(x, [ClassifierOutputTarget(c)])[0] for c in classes])
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("model", slow_except(MODELS, "squeezenet1_1", "timm:vit_tiny_patch16_224"))
@pytest.mark.parametrize("method", sorted(FAST_METHODS))
def test_fast_maps_equal_library(models, photo, model, method):
    clf = models[model]
    x = clf.preprocess(photo)
    classes = [int(c) for c in clf.predict_tensor(x).order[:5]] + [999]  # any class, not only the top-5
    ours = ic_zoo.instance("explainer", method).explain(clf, x, classes)
    ref = _library_maps(clf, FAST_METHODS[method][0], x, classes)
    assert ours.normalized.shape == ref.shape == (6, *clf.input_size)
    assert np.abs(ours.normalized - ref).max() < 1e-4
    assert ours.raw.min() >= 0 and np.isfinite(ours.raw).all()
    assert hooks(clf.model) == 0


def test_true_cam_equals_gradcam_for_a_linear_head(models, photo):
    clf = models["timm:resnet18"]
    x = clf.preprocess(photo)
    cam = ic_zoo.instance("explainer", "cam").explain(clf, x, [3, 7])
    gc = ic_zoo.instance("explainer", "gradcam").explain(clf, x, [3, 7])
    assert np.abs(cam.normalized - gc.normalized).max() < 1e-4


def test_true_cam_squeezenet_is_the_class_map(models, photo):
    clf = models["squeezenet1_1"]
    x = clf.preprocess(photo)
    out = ic_zoo.instance("explainer", "cam").explain(clf, x, [5])
    with torch.no_grad():
        feats = clf.model.features(x)
        maps = clf.model.classifier[:3](feats)[0, 5].numpy()
    raw_small = out.raw[0]
    # the raw map is the ReLU'd 1x1-conv class map, upsampled; its mean is the logit
    assert abs(maps.mean() - float(clf.predict_tensor(x).logits[5])) < 1e-4
    assert abs(raw_small.max() - maps.max()) < 1e-3 * max(1.0, maps.max())


def test_cam_not_supported_for_token_pooling_vit(models):
    reason = ic_zoo.instance("explainer", "cam").supports(models["timm:vit_tiny_patch16_224"])
    assert reason and "Grad-CAM" in reason


@pytest.mark.parametrize("model", slow_except(MODELS, "squeezenet1_1"))
@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "fullgrad"])
def test_slow_methods_work_release_hooks_and_restore_the_model(models, photo, model, method):
    clf = models[model]
    ex = ic_zoo.instance("explainer", method)
    assert ex.cost == "slow"
    x = clf.preprocess(photo)
    if clf.family == "cnn":  # CNNs take any size; a small input keeps one-forward-per-channel methods quick
        x = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False)
    before = [type(m).__name__ for m in clf.model.modules()]
    ref_logits = clf.predict_tensor(x).logits
    seen = []
    out = ex.explain(clf, x, [1], progress=lambda f, msg: seen.append(f))
    assert out.normalized.shape == (1, *x.shape[-2:]) and np.isfinite(out.normalized).all()
    assert out.normalized.max() > 0
    r = out.raw[0]  # the raw map is the library's map before its min-max scaling
    assert np.allclose((r - r.min()) / (r.max() - r.min() + 1e-12), out.normalized[0], atol=1e-3)
    assert hooks(clf.model) == 0
    assert [type(m).__name__ for m in clf.model.modules()] == before  # nothing swapped in and left
    assert np.allclose(clf.predict_tensor(x).logits, ref_logits)
    if method in ("scorecam", "ablationcam"):
        assert seen and seen[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("model", slow_except(["squeezenet1_1", "timm:resnet18"], "squeezenet1_1"))
def test_shapley_cam_equals_the_library_and_leaves_the_model_frozen(models, photo, model):
    """ShapleyCAM (pytorch-grad-cam 1.5.7) differentiates the gradients again, so it runs with the
    parameters unfrozen; afterwards they are frozen again, nothing is hooked, and the map is the library's."""
    clf = models[model]
    x = torch.nn.functional.interpolate(clf.preprocess(photo), size=(96, 96), mode="bilinear", align_corners=False)
    ours = ic_zoo.instance("explainer", "shapleycam").explain(clf, x, [1, 2]).normalized
    np.testing.assert_allclose(ours, _library_maps(clf, "ShapleyCAM", x, [1, 2]), atol=1e-4)
    assert hooks(clf.model) == 0 and not any(p.requires_grad for p in clf.model.parameters())
    vit = models["timm:vit_tiny_patch16_224"]
    assert "fused attention" in ic_zoo.instance("explainer", "shapleycam").supports(vit)


@pytest.mark.slow
def test_concurrent_calls_on_one_model_do_not_share_hooks(models, photo):
    clf = models["timm:resnet18"]
    ex = ic_zoo.instance("explainer", "gradcam")
    rng = np.random.default_rng(0)
    images = [np.clip(photo.astype(int) + rng.integers(-60, 60, photo.shape), 0, 255).astype(np.uint8)
              for _ in range(6)]
    xs = [clf.preprocess(im) for im in images]
    serial = [ex.explain(clf, x, [1, 2]).raw for x in xs]
    results = [None] * len(xs)
    errors = []

    def work(i):
        try:
            results[i] = ex.explain(clf, xs[i], [1, 2]).raw
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for a, b in zip(serial, results):
        assert np.allclose(a, b, atol=1e-5)
    assert hooks(clf.model) == 0


def test_hf_vit_fast_path_equals_library(photo):
    from transformers import ViTConfig, ViTForImageClassification

    from ic_zoo.classifiers._base import Classifier, InputGeometry, TokenGridReshape

    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=64, num_labels=4))

    class Tiny(Classifier):
        def forward(self, x):
            return self.model(pixel_values=x).logits

    import torchvision.transforms as T

    clf = Tiny(model, list("abcd"), T.Compose([T.Resize((64, 64)), T.ToTensor()]), InputGeometry((64, 64), None),
               [model.vit.layers[-1].layernorm_before], name="tiny-hf-vit",
               reshape_transform=TokenGridReshape((4, 4), 1), device="cpu")
    x = clf.preprocess(photo)
    ours = ic_zoo.instance("explainer", "gradcam").explain(clf, x, [0, 1, 2, 3])
    ref = _library_maps(clf, "GradCAM", x, [0, 1, 2, 3])
    assert np.abs(ours.normalized - ref).max() < 1e-4
