"""Score-CAM and Ablation-CAM made fast honestly, and the pytorch-grad-cam 1.5.7 methods FinerCAM and
RefineCAM on the one-pass path: each equal to the library's own call to 1e-4 (Score-CAM and
Ablation-CAM to the library run unbatched, batch size 1), hooks released, progress that never goes back."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import held_out_flower, hooks, seeded_classifiers, slow_except
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

import ic_zoo
from ic_zoo.explainers.cam_methods import refine_layers
from ic_zoo.explainers.channel_cams import BatchTuner

FLOWER = ["flower2d/squeezenet", "flower2d/resnet", "flower2d/vit"]
IMAGENET = ["squeezenet1_1", "timm:resnet18", "timm:vit_tiny_patch16_224"]


@pytest.fixture(scope="module")
def clfs():
    return seeded_classifiers(FLOWER + IMAGENET)


@pytest.fixture(scope="module")
def flower():
    return held_out_flower()


def _input(clf, flower):
    x = clf.preprocess(flower)
    if clf.family == "cnn" and not clf.name.startswith("flower2d"):  # any size; small keeps per-channel passes quick
        x = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False)
    return x


def _library(clf, cls_name, x, classes, unfrozen=False, **kw):
    import contextlib

    import pytorch_grad_cam
    from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit

    args = dict(model=clf.logits_module(), target_layers=kw.pop("layers", clf.target_layers),
                reshape_transform=clf.reshape_transform)
    if cls_name == "AblationCAM":
        args.update(ablation_layer=AblationLayerVit() if clf.reshape_transform is not None else AblationLayer(),
                    batch_size=1)
    lib = getattr(pytorch_grad_cam, cls_name)(**args)
    if cls_name == "ScoreCAM":
        lib.batch_size = 1
    try:
        with clf.unfrozen() if unfrozen else contextlib.nullcontext():
            return np.stack([lib(x, [ClassifierOutputTarget(c)])[0] for c in classes])
    finally:
        for cam in getattr(lib, "base_cam_per_layer", [getattr(lib, "base_cam", lib)]):
            cam.activations_and_grads.release()


@pytest.mark.parametrize("model", slow_except(FLOWER + IMAGENET, *FLOWER))
@pytest.mark.parametrize("method,library", [("scorecam", "ScoreCAM"), ("ablationcam", "AblationCAM")])
def test_batched_channel_cams_equal_the_library_unbatched(clfs, flower, model, method, library):
    clf = clfs[model]
    x = _input(clf, flower)
    classes = [int(c) for c in clf.predict_tensor(x).order[:2]]
    seen = []
    before = clf.predict_tensor(x).logits
    out = ic_zoo.instance("explainer", method).explain(clf, x, classes, progress=lambda f, m: seen.append(f))
    ref = _library(clf, library, x, classes)
    assert np.abs(out.normalized - ref).max() < 1e-4
    assert out.raw.min() >= 0 and np.isfinite(out.raw).all()
    assert seen == sorted(seen) and seen[-1] == 1.0  # progress never goes back
    assert hooks(clf.model) == 0 and np.allclose(clf.predict_tensor(x).logits, before)
    tuner = clf.cached(f"channel-cam batch size ({method})", lambda: None)
    assert tuner.trials and all(s in tuner.sizes for s in tuner.trials)  # the batch sizes tried on this work


def test_ablation_cam_runs_the_whole_network_when_the_batch_cannot_start_at_the_target(flower):
    """A network that reads the batch size before the target layer cannot take the ablated batch there
    alone; it runs whole (as the library does), with the same map."""
    from ic_zoo.classifiers._base import Classifier, InputGeometry
    import torchvision.transforms as T

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(),
                                                torch.nn.Conv2d(8, 12, 3, 2, 1), torch.nn.ReLU())
            self.fc = torch.nn.Linear(12 * 8 * 8, 5)

        def forward(self, x):
            n = x.shape[0]
            return self.fc(self.features(x).reshape(n, -1))

    torch.manual_seed(0)
    net = Net()
    clf = Classifier(net, list("abcde"), T.Compose([T.Resize((32, 32)), T.ToTensor()]),
                     InputGeometry((32, 32), None), [net.features], name="reads-its-batch", device="cpu")
    x = clf.preprocess(flower)
    classes = [int(c) for c in clf.predict_tensor(x).order[:2]]
    out = ic_zoo.instance("explainer", "ablationcam").explain(clf, x, classes)
    assert id(net.features) in clf.cached("ablationcam runs whole", dict)["layers"]
    assert np.abs(out.normalized - _library(clf, "AblationCAM", x, classes)).max() < 1e-4
    assert hooks(clf.model) == 0


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_the_topk_variants_pass_only_k_channels(clfs, flower, method):
    clf = clfs["flower2d/squeezenet"]  # 128 channels at its target layer
    x = _input(clf, flower)
    cls = [clf.predict_tensor(x).top1]
    calls = []
    h = clf.model.register_forward_pre_hook(lambda m, i: calls.append(i[0].shape[0]))
    try:
        approx = ic_zoo.create("explainer", method + "-topk", k=16).explain(clf, x, cls)
    finally:
        h.remove()
    if method == "scorecam":
        assert sum(calls) - 1 == 16  # one tapped pass, then one masked input per channel
    else:  # the first layers run on the one image, once per batch
        assert len(calls) >= 2
    full = ic_zoo.instance("explainer", method).explain(clf, x, cls)
    all_k = ic_zoo.create("explainer", method + "-topk", k=10_000).explain(clf, x, cls)
    assert np.abs(all_k.normalized - full.normalized).max() < 1e-5  # k >= channels: the exact method
    assert np.isfinite(approx.normalized).all() and approx.normalized.max() > 0
    assert ic_zoo.get_spec("explainer", method + "-topk").meta["cost"] == "slow"
    assert "approximation" in ic_zoo.get_spec("explainer", method + "-topk").description
    from ic_zoo.errors import InputError

    with pytest.raises(InputError, match="whole number"):
        ic_zoo.create("explainer", method + "-topk", k=0)


def test_the_batch_tuner_keeps_the_size_with_the_least_time_per_pass():
    t = BatchTuner((4, 8, 16, 32))
    for size, per in ((4, 1.0), (8, 0.6), (16, 0.7)):
        assert t.size() == size
        t.record(size, size, per * size)
    assert t.best == 8 and t.size() == 8
    t.record(8, 8, 100.0)  # settled: later calls do not move it
    assert t.size() == 8
    short = BatchTuner((4, 8))
    short.record(4, 2, 1.0)  # a short last batch says nothing
    assert short.size() == 4 and not short.trials


@pytest.mark.parametrize("model", slow_except(FLOWER + IMAGENET, *FLOWER, "squeezenet1_1"))
def test_finercam_equals_the_library_and_contrasts_two_classes(clfs, flower, model):
    clf = clfs[model]
    x = _input(clf, flower)
    order = [int(c) for c in clf.predict_tensor(x).order]
    classes = order[:3] + [order[-1]]
    ex = ic_zoo.instance("explainer", "finercam")
    ours = ex.explain(clf, x, classes)
    import pytorch_grad_cam

    cam = pytorch_grad_cam.FinerCAM(clf.logits_module(), clf.target_layers, clf.reshape_transform)
    try:
        with clf.unfrozen():  # the library's own choice of comparison classes, and one pair given
            ref = np.stack([cam(x, None, target_idx=c)[0] for c in classes])
            pair = cam(x, [FinerWeightedTarget(order[0], [order[1]], 1.0)])[0]
    finally:
        cam.base_cam.activations_and_grads.release()
    assert np.abs(ours.normalized - ref).max() < 1e-4
    with clf.lock:
        run = clf.run(x, clf.target_layers, True)
        contrast = ex.contrast_from_run(clf, run, x, order[0], order[1])
    assert np.abs(contrast.normalized[0] - pair).max() < 1e-4
    assert hooks(clf.model) == 0


@pytest.mark.parametrize("model", slow_except(FLOWER + IMAGENET, *FLOWER, "timm:resnet18"))
def test_refinecam_equals_the_library_on_the_stage_ends(clfs, flower, model):
    clf = clfs[model]
    x = _input(clf, flower)
    layers = refine_layers(clf)
    assert len(layers) >= 2 and layers[-1] is clf.target_layers[-1]
    classes = [int(c) for c in clf.predict_tensor(x).order[:2]]
    ours = ic_zoo.instance("explainer", "refinecam").explain(clf, x, classes)
    ref = _library(clf, "RefineCAM", x, classes, unfrozen=True, layers=layers)
    assert np.abs(ours.normalized - ref).max() < 1e-4 and ours.normalized.max() > 0
    assert hooks(clf.model) == 0
    from ic_zoo.errors import ExplainerNotSupportedError

    with pytest.raises(ExplainerNotSupportedError, match="one class"):
        ic_zoo.instance("explainer", "refinecam").contrast_from_run(clf, None, x, 0, 1)


def test_gradients_reach_every_tap_of_one_pass(clfs, flower):
    """Taps one after another in a network share the pass's graph: each gets the gradient a pass
    tapping it alone gives (RefineCAM needs three at once)."""
    clf = clfs["flower2d/resnet"]
    x = clf.preprocess(flower)
    layers = [clf.model.layer1, clf.model.layer2, clf.model.layer3]
    with clf.lock:
        together = clf.run(x, layers, True).grads([0, 4])
        for i, layer in enumerate(layers):
            alone = clf.run(x, [layer], True).grads([0, 4])[0]
            assert together[i].abs().max() > 0
            assert torch.allclose(together[i], alone, atol=1e-6)
    assert hooks(clf.model) == 0
