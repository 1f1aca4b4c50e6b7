"""Attention rollout and Chefer et al.'s gradient-weighted relevance: equal to a reference computed here
independently (the attention captured by plain hooks with the parameters trainable, the formulas in
numpy), from one tapped pass with the fused kernel switched off for that pass only."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import hooks

import ic_zoo


@pytest.fixture(scope="module")
def tiny():
    import timm.models.vision_transformer as V
    import torchvision.transforms as T

    from ic_zoo.classifiers._base import Classifier, InputGeometry, TokenGridReshape

    torch.manual_seed(0)
    net = V.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=5)
    ref = copy.deepcopy(net).eval()
    clf = Classifier(net, list("abcde"), T.Compose([T.Resize((32, 32)), T.ToTensor()]), InputGeometry((32, 32), None),
                     [net.blocks[-1].norm1], name="tiny-timm-vit", reshape_transform=TokenGridReshape((4, 4), 1),
                     device="cpu")
    rng = np.random.default_rng(0)
    x = clf.preprocess(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    return clf, ref, x


def _reference(ref, x, c):
    """Attention of every block by plain hooks (gradients retained), then the papers' formulas."""
    store = []

    def keep(module, inputs, out):
        out.retain_grad()
        store.append(out)

    for blk in ref.blocks:
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(keep)
    logits = ref(x)
    logits[0, c].backward()
    atts = [a.detach()[0].numpy().astype(np.float64) for a in store]  # (heads, N, N)
    grads = [a.grad[0].numpy().astype(np.float64) for a in store]
    n = atts[0].shape[-1]
    roll = np.eye(n)
    for a in atts:
        a = 0.5 * a.mean(0) + 0.5 * np.eye(n)
        roll = (a / a.sum(-1, keepdims=True)) @ roll
    rel = np.eye(n)
    for a, g in zip(atts, grads):
        rel = rel + np.maximum(g * a, 0).mean(0) @ rel
    return roll[0, 1:].reshape(4, 4), rel[0, 1:].reshape(4, 4)


def _legrad_reference(ref, x, c):
    """LeGrad by plain hooks: each block's attention and output kept, that block's own score (its tokens
    through the final norm and head) differentiated at its attention, one class and one block at a time."""
    atts, outs = [], []
    for blk in ref.blocks:
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda m, i, o: atts.append(o))
        blk.register_forward_hook(lambda m, i, o: outs.append(o))
    ref(x)
    maps = []
    for a, z in zip(atts, outs):
        score = ref.forward_head(ref.norm(z))[0, c]
        g = torch.autograd.grad(score, a, retain_graph=True)[0][0].numpy().astype(np.float64)  # (heads, N, N)
        maps.append(np.maximum(g, 0).mean(0).mean(0))
    return np.mean(maps, 0)[1:].reshape(4, 4)


def test_legrad_equals_an_independent_reference(tiny):
    from pytorch_grad_cam.utils.image import scale_cam_image

    clf, ref, x = tiny
    out = ic_zoo.instance("explainer", "legrad").explain(clf, x, [1, 3])
    for j, c in enumerate([1, 3]):
        grid = _legrad_reference(copy.deepcopy(ref), x, c)
        expect = scale_cam_image(scale_cam_image(np.maximum(grid, 0)[None].astype(np.float32), (32, 32)))[0]
        assert np.abs(out.normalized[j] - expect).max() < 1e-4
        raw = ic_zoo.resize_maps(np.maximum(grid, 0)[None], (32, 32))[0]  # the raw map: the grid, resized
        assert np.abs(out.raw[j] - raw).max() <= 1e-4 * raw.max()
    assert not np.allclose(out.normalized[0], out.normalized[1])  # class-specific
    assert hooks(clf.model) == 0 and all(p.grad is None for p in clf.model.parameters())


@pytest.mark.parametrize("name,which", [("rollout", 0), ("chefer", 1)])
def test_attention_maps_equal_an_independent_reference(tiny, name, which):
    from pytorch_grad_cam.utils.image import scale_cam_image

    clf, ref, x = tiny
    classes = [1, 3]
    out = ic_zoo.instance("explainer", name).explain(clf, x, classes)
    for j, c in enumerate(classes):
        grid = _reference(copy.deepcopy(ref), x, c)[which]
        expect = scale_cam_image(np.maximum(grid, 0)[None].astype(np.float32), (32, 32))
        expect = scale_cam_image(expect)[0]  # the library's two scalings, as for any map
        assert np.abs(out.normalized[j] - expect).max() < 1e-4
    assert hooks(clf.model) == 0


def test_the_fused_kernel_comes_back_and_other_models_are_refused(tiny):
    clf, _, x = tiny
    before = [b.attn.fused_attn for b in clf.model.blocks]
    ic_zoo.instance("explainer", "chefer").explain(clf, x, [0])
    assert [b.attn.fused_attn for b in clf.model.blocks] == before
    cnn = ic_zoo.create("classifier", "flower2d/resnet")
    assert "attention" in ic_zoo.instance("explainer", "rollout").supports(cnn)
    vit = ic_zoo.create("classifier", "flower2d/vit")
    assert ic_zoo.instance("explainer", "chefer").supports(vit) is None
    rollout = ic_zoo.instance("explainer", "rollout").explain(vit, vit.preprocess(np.zeros((64, 64, 3), np.uint8)), [0, 1])
    assert np.allclose(rollout.normalized[0], rollout.normalized[1])  # class-agnostic


def test_the_session_taps_attention_on_the_edit_pass():
    """In the app's path (the edit's one tapped pass, the session's cache), the attention explainers get
    their matrices too, and the maps equal a direct call."""
    from ic_zoo.flower2d import generator as g
    from ic_zoo.session import Session

    img, _ = g.render(g.sample_params("double-12c", 0, "test", 5), 64)
    s = Session(img)
    mask = np.zeros(img.shape[:2], bool)
    mask[10:20, 10:20] = True
    s.apply(mask, "telea")
    maps = s.explain("flower2d/vit", [0, 2], explainer="chefer")
    vit = s.classifier("flower2d/vit")
    direct = ic_zoo.instance("explainer", "chefer").explain(vit, vit.preprocess(s.modified), [0, 2])
    assert np.abs(maps[1].modified_normalized - direct.normalized[1]).max() < 1e-4
    assert np.abs(maps[1].raw_modified - direct.raw[1]).max() < 1e-5
    assert hooks(vit.model) == 0


@pytest.fixture(scope="module")
def hf_vit(hf_snapshot, tmp_root):
    """A tiny transformers ViT in the hub cache, loaded as a user's hf-hub: model is."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = {0: "cat", 1: "dog", 2: "cow"}
    net = ViTForImageClassification(ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=3,
                                              num_attention_heads=2, intermediate_size=64, num_labels=3,
                                              id2label=labels, label2id={v: k for k, v in labels.items()}))
    d = tmp_root / "hf_vit_attention"
    net.save_pretrained(d)
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(d)
    hf_snapshot("test-org/tiny-vit-attention", {p.name: p for p in d.iterdir() if p.is_file()})
    clf = ic_zoo.create("classifier", "hf-hub:test-org/tiny-vit-attention", pretrained=True, device="cpu")
    rng = np.random.default_rng(1)
    return clf, clf.preprocess(rng.integers(0, 255, (70, 70, 3), dtype=np.uint8))


def _hf_reference(clf, x, c):
    """Rollout, Chefer and LeGrad from transformers' own returned attentions and hidden states, on a copy
    with trainable parameters, one class at a time (no hooks, no taps)."""
    net = copy.deepcopy(clf.model)
    net.set_attn_implementation("eager")
    for p in net.parameters():
        p.requires_grad_(True)
    out = net(pixel_values=x, output_attentions=True, output_hidden_states=True)
    atts = list(out.attentions)
    grads = torch.autograd.grad(out.logits[0, c], atts, retain_graph=True)
    a64 = [a.detach()[0].double().numpy() for a in atts]
    g64 = [g[0].double().numpy() for g in grads]
    n = a64[0].shape[-1]
    roll, rel = np.eye(n), np.eye(n)
    for a, g in zip(a64, g64):
        m = 0.5 * a.mean(0) + 0.5 * np.eye(n)
        roll = (m / m.sum(-1, keepdims=True)) @ roll
        rel = rel + np.maximum(g * a, 0).mean(0) @ rel
    leg = []
    for a, z in zip(atts, out.hidden_states[1:]):
        s = net.classifier(net.vit.layernorm(z)[:, 0])[0, c]
        g = torch.autograd.grad(s, a, retain_graph=True)[0][0].double().numpy()
        leg.append(np.maximum(g, 0).mean(0).mean(0))
    return {"rollout": roll[0, 1:], "chefer": rel[0, 1:], "legrad": np.mean(leg, 0)[1:]}


@pytest.mark.parametrize("name", ["rollout", "chefer", "legrad"])
def test_hugging_face_vits_get_the_same_maps(hf_vit, name):
    from pytorch_grad_cam.utils.image import scale_cam_image

    clf, x = hf_vit
    ex = ic_zoo.instance("explainer", name)
    assert ex.supports(clf) is None and ex.taps(clf) is None  # transformers hands the attention out itself
    before, held = clf.model.config._attn_implementation, hooks(clf.model)  # (transformers keeps hooks of its own)
    out = ex.explain(clf, x, [0, 2])
    assert clf.model.config._attn_implementation == before  # eager only for the pass
    for j, c in enumerate([0, 2]):
        grid = _hf_reference(clf, x, c)[name].reshape(4, 4)
        expect = scale_cam_image(scale_cam_image(np.maximum(grid, 0)[None].astype(np.float32), (64, 64)))[0]
        assert np.abs(out.normalized[j] - expect).max() < 1e-4, name
    assert hooks(clf.model) == held and all(p.grad is None for p in clf.model.parameters())


def test_a_session_explains_a_hugging_face_vit_with_attention(hf_vit):
    from ic_zoo.session import Session

    clf, _ = hf_vit
    s = Session(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    m = s.explain("hf-hub:test-org/tiny-vit-attention", 1, explainer="chefer")
    assert m.raw_original.shape == (64, 64) and m.raw_original.max() > 0
