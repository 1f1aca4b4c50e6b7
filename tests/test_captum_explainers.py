"""The Captum explainers (Integrated Gradients, SmoothGrad through NoiseTunnel, Input x Gradient, Captum's
Occlusion): each runs for a CNN and a ViT and equals Captum's direct call on the same input; nothing is
left hooked or holding gradients; SmoothGrad is reproducible and leaves the process's random state alone;
they run through a Session like any explainer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import held_out_flower, hooks, seeded_classifiers, slow_except

import ic_zoo
from ic_zoo.explainers import captum_methods as cm

MODELS = ["flower2d/resnet", "timm:vit_tiny_patch16_224"]
NAMES = ["inputxgradient", "integratedgradients", "smoothgrad", "captum-occlusion"]


@pytest.fixture(scope="module")
def clfs():
    return seeded_classifiers(MODELS)


@pytest.fixture(scope="module")
def flower():
    return held_out_flower()


def _direct(name, clf, x, c):
    """Captum called directly, as its documentation shows, with the arguments the explainer documents."""
    from captum.attr import IntegratedGradients, InputXGradient, NoiseTunnel, Occlusion, Saliency

    f = clf.logits_module()
    x = x.detach().clone().requires_grad_(True)
    if name == "inputxgradient":
        a = InputXGradient(f).attribute(x, target=c)
    elif name == "integratedgradients":
        a = IntegratedGradients(f).attribute(x, baselines=0.0, target=c, n_steps=cm.IG_STEPS)
    elif name == "smoothgrad":
        torch.manual_seed(cm.SEED)
        a = NoiseTunnel(Saliency(f)).attribute(x, nt_type="smoothgrad", nt_samples=cm.SG_SAMPLES,
                                               stdevs=cm.SG_NOISE * float(x.detach().max() - x.detach().min()), target=c)
    else:
        h, w = x.shape[-2:]
        a = Occlusion(f).attribute(x, sliding_window_shapes=(3, h // 8, w // 8), strides=(3, h // 16, w // 16),
                                   baselines=0.0, target=c)
    return np.maximum(a.detach().float().sum(1).numpy(), 0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", slow_except(NAMES, "inputxgradient", "integratedgradients", "smoothgrad"))
def test_equals_captum_direct_call(clfs, flower, model, name):
    clf = clfs[model]
    x = clf.preprocess(flower)
    classes = [int(clf.predict(flower).top1), 3]
    ex = ic_zoo.create("explainer", name)
    assert ex.supports(clf) is None
    steps = []
    out = ex.explain(clf, x, classes, progress=lambda f, msg: steps.append(f))
    assert out.raw.shape == (2,) + tuple(x.shape[-2:]) and out.normalized.shape == out.raw.shape
    assert (out.raw >= 0).all() and out.normalized.min() >= 0 and out.normalized.max() <= 1 + 1e-6
    for j, c in enumerate(classes):
        ref = _direct(name, clf, x, c)[0]
        scale = max(float(np.abs(ref).max()), 1e-12)
        assert np.abs(out.raw[j] - ref).max() / scale < 1e-3, (name, model, c)
    assert out.raw[0].max() > 0  # a real map, not an empty one
    assert hooks(clf.model) == 0
    assert all(p.grad is None for p in clf.model.parameters())
    assert steps == sorted(steps) and steps[-1] == 1.0


def test_class_maps_differ_by_class(clfs, flower):
    clf = clfs["flower2d/resnet"]
    x = clf.preprocess(flower)
    out = ic_zoo.create("explainer", "inputxgradient").explain(clf, x, [0, 1])
    assert not np.allclose(out.raw[0], out.raw[1])


def test_smoothgrad_reproducible_and_leaves_random_state(clfs, flower):
    clf = clfs["flower2d/resnet"]
    x = clf.preprocess(flower)
    ex = ic_zoo.create("explainer", "smoothgrad")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = ex.explain(clf, x, [1]).raw
    assert torch.equal(torch.get_rng_state(), before)
    b = ex.explain(clf, x, [1]).raw
    np.testing.assert_array_equal(a, b)


def test_costs_and_session(flower):
    costs = {n: ic_zoo.get_spec("explainer", n).meta["cost"] for n in NAMES}
    assert costs == {"inputxgradient": "interactive", "integratedgradients": "slow", "smoothgrad": "slow",
                     "captum-occlusion": "slow"}
    s = ic_zoo.Session(flower, pretrained=True, device="cpu")
    top = s.predict("flower2d/resnet").top1
    m = s.explain("flower2d/resnet", int(top), "inputxgradient")
    assert m.raw_original.shape == m.raw_modified.shape and m.raw_original.max() > 0
