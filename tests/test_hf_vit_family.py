"""The Hugging Face ViT family as ``hf-hub:`` models (tiny random configs in the hub cache): ViT (a
non-square grid), DeiT distilled (class + distillation tokens), BEiT, DINOv2, DINOv2 with registers (a
non-square input) and the CLIP vision tower. Each gets the right target layer, prefix count and grid;
Grad-CAM equals pytorch-grad-cam's own on the same layer with a reshape written here; rollout equals a
computation from transformers' own returned attentions; Chefer and LeGrad give maps or one sentence."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import ic_zoo

KW = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
LABELS = {0: "cat", 1: "dog", 2: "cow"}

# name: (model class, config class, config kwargs, input (h, w), prefix tokens, pre-attention norm of the last layer)
CASES = {
    "vit": ("ViTForImageClassification", "ViTConfig", dict(image_size=[32, 48], patch_size=8), (32, 48), 1,
            lambda m: m.vit.layers[-1].layernorm_before),
    "deit-distilled": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(image_size=32, patch_size=8),
                       (32, 32), 2, lambda m: m.deit.layers[-1].layernorm_before),
    "beit": ("BeitForImageClassification", "BeitConfig", dict(image_size=32, patch_size=8,
                                                             use_relative_position_bias=True), (32, 32), 1,
             lambda m: m.beit.layers[-1].layernorm_before),
    "dinov2": ("Dinov2ForImageClassification", "Dinov2Config", dict(image_size=32, patch_size=8), (32, 32), 1,
               lambda m: m.dinov2.encoder.layer[-1].norm1),
    "dinov2-registers": ("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig",
                         dict(image_size=32, patch_size=8, num_register_tokens=3), (32, 48), 4,
                         lambda m: m.dinov2_with_registers.encoder.layer[-1].norm1),
    "clip-vision": ("CLIPForImageClassification", "CLIPConfig",
                    dict(vision_config=dict(image_size=32, patch_size=8, **KW)), (32, 32), 1,
                    lambda m: m.vision_model.encoder.layers[-1].layer_norm1),
}


@pytest.fixture(scope="module")
def family(hf_snapshot, tmp_root):
    import transformers

    out = {}
    for name, (model_cls, cfg_cls, kw, (h, w), _, _) in CASES.items():
        torch.manual_seed(0)
        extra = {} if name == "clip-vision" else KW
        cfg = getattr(transformers, cfg_cls)(**kw, **extra, num_labels=3, id2label=LABELS,
                                             label2id={v: k for k, v in LABELS.items()})
        net = getattr(transformers, model_cls)(cfg)
        d = tmp_root / f"hf_family_{name}"
        net.save_pretrained(d)
        if name == "clip-vision":
            proc = transformers.CLIPImageProcessor(size={"shortest_edge": h}, crop_size={"height": h, "width": w})
            proc.save_pretrained(d)
        else:
            transformers.ViTImageProcessor(size={"height": h, "width": w}).save_pretrained(d)
        hf_snapshot(f"test-org/tiny-{name}", {p.name: p for p in d.iterdir() if p.is_file()})
        clf = ic_zoo.create("classifier", f"hf-hub:test-org/tiny-{name}", pretrained=True, device="cpu")
        rng = np.random.default_rng(3)
        out[name] = (clf, clf.preprocess(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)))
    return out


def _layout(name):
    _, _, _, (h, w), prefix, layer = CASES[name]
    return (h // 8, w // 8), prefix, layer


@pytest.mark.parametrize("name", list(CASES))
def test_the_layout_is_read_off_the_model(family, name):
    clf, x = family[name]
    grid, prefix, layer = _layout(name)
    assert type(clf.model).__name__ == CASES[name][0]
    assert clf.family == "vit" and x.shape[-2:] == CASES[name][3]
    assert clf.reshape_transform.grid == grid and clf.reshape_transform.num_prefix_tokens == prefix
    assert clf.target_layers == [layer(clf.model)]


@pytest.mark.parametrize("name", list(CASES))
def test_gradcam_equals_the_library_with_a_hand_reshape(family, name):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    clf, x = family[name]
    (gh, gw), p, layer = _layout(name)

    def reshape(t):  # written here: drop the p prefix tokens, tokens to a gh x gw grid, channels first
        return t[:, p:, :].reshape(t.shape[0], gh, gw, t.shape[2]).permute(0, 3, 1, 2)

    ours = ic_zoo.instance("explainer", "gradcam").explain(clf, x, [0, 1, 2])
    cam = pytorch_grad_cam.GradCAM(model=clf.logits_module(), target_layers=[layer(clf.model)],
                                   reshape_transform=reshape)
    try:
        with clf.unfrozen():
            ref = np.stack([cam(x, [ClassifierOutputTarget(c)])[0] for c in [0, 1, 2]])
    finally:
        cam.activations_and_grads.release()
    assert ours.normalized.shape == ref.shape == (3, *CASES[name][3])
    assert np.abs(ours.normalized - ref).max() < 1e-4


@pytest.mark.parametrize("name", list(CASES))
def test_rollout_equals_one_from_the_returned_attentions(family, name):
    from pytorch_grad_cam.utils.image import scale_cam_image

    clf, x = family[name]
    (gh, gw), p, _ = _layout(name)
    net = copy.deepcopy(clf.model)
    net.set_attn_implementation("eager")
    with torch.no_grad():
        atts = net(pixel_values=x, output_attentions=True).attentions
    n = atts[0].shape[-1]
    assert n == p + gh * gw
    roll = np.eye(n)
    for a in atts:
        m = 0.5 * a[0].double().mean(0).numpy() + 0.5 * np.eye(n)
        roll = (m / m.sum(-1, keepdims=True)) @ roll
    grid = np.maximum(roll[0, p:].reshape(gh, gw), 0)[None].astype(np.float32)
    expect = scale_cam_image(scale_cam_image(grid, CASES[name][3][::-1]))[0]
    before = clf.model.config._attn_implementation
    out = ic_zoo.instance("explainer", "rollout").explain(clf, x, [1])
    assert clf.model.config._attn_implementation == before
    assert np.abs(out.normalized[0] - expect).max() < 1e-4


@pytest.mark.parametrize("name", list(CASES))
def test_legrad_reads_the_models_own_head(family, name):
    """LeGrad's logit lens is the model's head: on the last layer's tokens it gives the model's logits."""
    from ic_zoo.explainers.attention import _head_of_tokens, _hf_run

    clf, x = family[name]
    with clf.lock:
        run = _hf_run(clf, x, False, True)
        lens = _head_of_tokens(clf)(run.acts[-1])
    assert torch.allclose(lens, run.logits, atol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("method", ["chefer", "legrad"])
def test_chefer_and_legrad_give_a_map_or_one_sentence(family, name, method):
    clf, x = family[name]
    ex = ic_zoo.instance("explainer", method)
    why = ex.supports(clf)
    if method == "chefer" and name in ("beit", "clip-vision"):  # heads that average the patch tokens
        assert isinstance(why, str) and clf.name in why and "\n" not in why and ". " not in why
        return
    assert why is None
    out = ex.explain(clf, x, [0, 2])
    assert out.raw.shape == (2, *CASES[name][3]) and np.isfinite(out.raw).all() and out.raw.max() > 0
    assert all(p.grad is None for p in clf.model.parameters())


def test_a_layout_the_probe_does_not_confirm_is_not_drawn_as_tokens(family):
    """A prefix count the probe pass contradicts: no token reshape (the caller explains a spatial layer)."""
    from ic_zoo.classifiers.hf_models import token_layout

    clf, _ = family["vit"]
    net = copy.deepcopy(clf.model)
    call = lambda m, t: m(pixel_values=t)  # noqa: E731
    assert token_layout(net, (32, 48), call, "x")[1].num_prefix_tokens == 1
    net.vit.embeddings.register_tokens = torch.nn.Parameter(torch.zeros(1, 2, 32))  # claims 2 registers more
    assert token_layout(net, (32, 48), call, "x") == (None, None)
