"""Classifiers: config-driven preprocessing, labels, input geometry, CAM layers, hook hygiene.

Parametrised over the registry, so a newly registered named classifier is tested automatically."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import hooks, slow_except
import torch

import ic_zoo
from ic_zoo.errors import UnknownPluginError

ic_zoo.ensure_loaded()
NAMED = [s.name for s in ic_zoo.list_plugins("classifier") if not s.is_namespace]


@pytest.fixture(scope="module")
def clfs():
    return {}


def _get(clfs, name):
    if name not in clfs:
        torch.manual_seed(0)
        clfs[name] = ic_zoo.create("classifier", name, pretrained=False, device="cpu")
    return clfs[name]


@pytest.mark.parametrize("name", slow_except(NAMED, *[n for n in NAMED if not n.startswith("vit_base")]))
def test_contract(clfs, photo, name):
    clf = _get(clfs, name)
    x = clf.preprocess(photo)
    assert x.shape == (1, 3, *clf.input_size)
    pred = clf.predict(photo)
    assert len(clf.labels) == clf.num_classes == pred.logits.shape[0]
    assert abs(float(pred.probs.sum()) - 1) < 1e-4
    top = pred.topk(5)
    assert [c.index for c in top] == list(pred.order[:5]) and top[0].prob >= top[-1].prob
    assert pred.rank(top[2].index) == 3
    assert clf.target_layers and all(isinstance(m, torch.nn.Module) for m in clf.target_layers)
    if clf.family == "vit":
        run = clf.run(x, clf.target_layers, grad=False)
        sp = clf.reshape_transform(run.acts[0])
        assert sp.ndim == 4 and tuple(sp.shape[-2:]) == clf.reshape_transform.grid
    assert hooks(clf.model) == 0


@pytest.mark.parametrize("name", NAMED)
def test_input_box_is_what_the_model_sees(clfs, photo, name):
    """Paint outside the reported crop box: the model input does not change; inside: it does."""
    clf = _get(clfs, name)
    x0, y0, x1, y1 = clf.input_box(photo.shape)
    H, W = photo.shape[:2]
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    ref = clf.preprocess(photo)
    outside = photo.copy()
    margin = 8
    outside[:, : max(0, int(x0) - margin)] = 0
    outside[:, min(W, int(np.ceil(x1)) + margin):] = 0
    outside[: max(0, int(y0) - margin)] = 0
    outside[min(H, int(np.ceil(y1)) + margin):] = 0
    assert torch.equal(clf.preprocess(outside), ref)
    inside = photo.copy()
    cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
    inside[cy - 20:cy + 20, cx - 20:cx + 20] = 0
    assert not torch.equal(clf.preprocess(inside), ref)


def test_pretrained_imagenet_models_crop_the_centre(clfs, photo):
    clf = _get(clfs, "resnet50.a1_in1k")  # 451 x 300 photo -> resize 235 short side -> crop 224
    x0, y0, x1, y1 = clf.input_box(photo.shape)
    assert x0 > 0 and y0 >= 0 and x1 < photo.shape[1]


def test_hooks_released_after_a_failing_run(clfs, photo):
    clf = _get(clfs, "squeezenet1_1")
    unused = torch.nn.Conv2d(1, 1, 1)
    with pytest.raises(RuntimeError, match="did not run"):
        clf.run(clf.preprocess(photo), [unused, clf.target_layers[0]])
    assert hooks(clf.model) == 0 and hooks(unused) == 0


def test_tapped_gradients_stop_at_the_target_layer(clfs, photo):
    """Only the layers above the tap are in the graph: the input gets no gradient, parameters none."""
    clf = _get(clfs, "resnet50.a1_in1k")
    x = clf.preprocess(photo)
    run = clf.run(x, clf.target_layers, grad=True)
    g = run.grads([1, 2, 3])
    assert g[0].shape == (3,) + tuple(run.acts[0].shape[1:])
    assert run.logits.grad_fn is not None and not x.requires_grad
    assert all(p.grad is None for p in clf.model.parameters())


def test_namespaces(photo):
    r18 = ic_zoo.create("classifier", "timm:resnet18", pretrained=False)
    assert r18.name == "timm:resnet18" and r18.num_classes == 1000 and r18.family == "cnn"
    assert r18.labels[1].startswith("goldfish")
    tv = ic_zoo.create("classifier", "torchvision:resnet18", pretrained=False)
    assert tv.labels[1] == "goldfish" and tv.cam_head() is not None
    vt = ic_zoo.create("classifier", "timm:vit_tiny_patch16_224", pretrained=False)
    assert vt.family == "vit" and vt.reshape_transform.grid == (14, 14)
    with pytest.raises(UnknownPluginError, match="timm has no model called 'not_a_model_xyz'"):
        ic_zoo.create("classifier", "timm:not_a_model_xyz", pretrained=False)
    with pytest.raises(UnknownPluginError, match="torchvision has no"):
        ic_zoo.create("classifier", "torchvision:not_a_model_xyz", pretrained=False)


def test_labels_come_from_each_models_config(clfs):
    sq = _get(clfs, "squeezenet1_1")
    from torchvision.models import SqueezeNet1_1_Weights

    assert sq.labels == SqueezeNet1_1_Weights.IMAGENET1K_V1.meta["categories"]
    r50 = _get(clfs, "resnet50.a1_in1k")
    from timm.data import ImageNetInfo

    assert r50.labels[207] == ImageNetInfo().index_to_description(207)
