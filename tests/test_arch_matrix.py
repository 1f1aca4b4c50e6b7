"""Issue 32: any timm classifier by name gives a right map or one sentence.

The matrix (``benchmarks/arch_matrix.json``: one family per timm module, picked from timm's registry, and
the families the issue names) is re-run row by row: the CAM tap's layout and refusal, every interactive
explainer's answer (the README's support table is this JSON), Grad-CAM equal to pytorch-grad-cam's on the
same layer, and the spatial check. Beside it, hand-written reshapes per layout (independent of the
library's derivation) as the reference for the named families, a check that a layout error cannot pass,
and the head-less checkpoint's sentence on every surface. The fast tier keeps a handful of rows.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import arch_matrix as am  # noqa: E402

MATRIX = json.loads((ROOT / "benchmarks" / "arch_matrix.json").read_text())
BUILT = [r for r in MATRIX["rows"] if "answers" in r and not am.is_hf(r)]
HF = [r for r in MATRIX["rows"] if am.is_hf(r)]
FAST = {"swin_tiny_patch4_window7_224", "levit_128s", "vit_small_patch14_reg4_dinov2",
        "deit_tiny_distilled_patch16_224", "hiera_tiny_224"}
#: spatial check: the share of the change landing in the changed quadrant, where a layer read right puts
#: clearly more than an even share (0.25); a layout error (transposed, channels as rows) puts it elsewhere
LOCAL = 0.33


def _rows():
    return [pytest.param(r, id=r["model"], marks=() if r["model"] in FAST else pytest.mark.slow) for r in BUILT]


def test_the_matrix_covers_every_timm_family_and_the_named_ones():
    import timm

    families = {r["family"] for r in MATRIX["rows"]}
    missing = sorted(set(timm.list_modules()) - families)
    assert not missing, f"timm families without a row: {missing}; run python benchmarks/arch_matrix.py"
    assert MATRIX["timm"] == f"timm {timm.__version__}", "the matrix was made with another timm; regenerate it"
    assert len(BUILT) >= 40
    assert set(am.NAMED) <= {r["model"] for r in BUILT}
    assert MATRIX["explainers"] == am.interactive_explainers()
    # every row either built or says why not, in one sentence
    assert all(am.one_sentence(r["why"]) for r in MATRIX["rows"] if "answers" not in r)


@pytest.mark.parametrize("row", _rows())
def test_each_architecture_gives_a_right_map_or_one_sentence(row):
    clf = am.build(row["model"], row["size"])
    assert list(clf.input_size) == row["input"]
    assert (getattr(clf, "tap_layout", ""), clf.cam_refusal) == (row["layout"], row["refusal"])
    x = am.probe_input(clf)
    answers = am.answers(clf, x, [0, 3], MATRIX["explainers"])
    errors = {n: a for n, a in answers.items() if a.startswith("error")}
    assert not errors, errors
    assert all(am.one_sentence(a) for a in answers.values() if a != "ok")
    assert answers == row["answers"], "the support table no longer says what the library does; regenerate it"
    if clf.target_layers:
        assert am.gradcam_vs_library(clf, x, [0, 3]) < 1e-4
        share = am.quadrant_share(clf)
        assert math.isnan(share) or share > LOCAL or row["model"] in GLOBAL_MIXING, share


@pytest.mark.slow
def test_the_hugging_face_rows_are_what_the_library_does():
    """The Hugging Face ViT family and CLIP (tiny configs through the real hub-cache loading path): each
    answer as the table says, Grad-CAM equal to the library's, the spatial check passed."""
    from arch_matrix_hf import hf_rows

    assert {r["family"] for r in HF} >= {"hf:vit", "hf:deit", "hf:dinov2", "hf:dinov2_with_registers", "hf:clip",
                                         "clip zero-shot"}
    fresh = {r["model"]: r for r in hf_rows(MATRIX["explainers"])}
    for row in HF:
        got = fresh[row["model"]]
        assert (got["layout"], got["answers"]) == (row["layout"], row["answers"]), row["model"]
        assert not any(a.startswith("error") for a in got["answers"].values())
        assert got["gradcam_vs_library"] < 1e-4 and got["quadrant_share"] > LOCAL, row["model"]


#: families whose CAM layer mixes the whole image at random initialisation (the change spreads evenly, so
#: the spatial check cannot tell); their layout is carried by the forward_intermediates check and the
#: hand-written reference below
GLOBAL_MIXING = {r["model"] for r in BUILT if r.get("quadrant_share") is not None and r["quadrant_share"] <= LOCAL}


def _tokens(prefix: int, grid: tuple[int, int]):
    def reshape(t):  # (B, prefix + gh*gw, C) -> (B, C, gh, gw), written out by hand
        b, _, c = t.shape
        return t[:, prefix:, :].reshape(b, grid[0], grid[1], c).permute(0, 3, 1, 2)

    return reshape


def _nhwc(t):
    return t.permute(0, 3, 1, 2)


#: model, build kwargs, the reshape pytorch-grad-cam's own documentation would have a user write
HAND = [
    ("resnet18", {"input_size": (96, 128)}, None),
    ("swin_tiny_patch4_window7_224", {"img_size": 224}, _nhwc),
    ("mambaout_femto", {"input_size": (128, 96)}, _nhwc),
    ("levit_128s", {"img_size": 256}, _tokens(0, (4, 4))),
    ("efficientformer_l1", {}, _tokens(0, (7, 7))),  # attention biases fixed to its 7 x 7 grid: 224 px only
    ("vit_tiny_patch16_224", {"img_size": (96, 128)}, _tokens(1, (6, 8))),
    ("deit_tiny_distilled_patch16_224", {"img_size": 96}, _tokens(2, (6, 6))),
    ("vit_small_patch14_reg4_dinov2", {"img_size": (70, 112)}, _tokens(5, (5, 8))),
    ("vit_medium_patch16_reg4_gap_256", {"img_size": 96, "depth": 2}, _tokens(4, (6, 6))),
    ("eva02_tiny_patch14_224", {"img_size": 112}, _tokens(1, (8, 8))),
    ("beit_base_patch16_224", {"img_size": 96, "depth": 2}, _tokens(1, (6, 6))),
    ("hiera_tiny_224", {"img_size": 224}, _tokens(0, (7, 7))),
]
FAST_HAND = {"swin_tiny_patch4_window7_224", "vit_small_patch14_reg4_dinov2", "levit_128s"}


@pytest.mark.parametrize("name,kwargs,reshape", [pytest.param(*h, id=h[0], marks=() if h[0] in FAST_HAND
                                                               else pytest.mark.slow) for h in HAND])
def test_gradcam_equals_the_library_with_a_hand_written_reshape(name, kwargs, reshape):
    """The reference: pytorch-grad-cam's GradCAM on the same layer with the reshape a user writes by
    hand for that layout (non-square inputs included): equal to 1e-4, and a map of the input's size."""
    clf = am.build(name, None, **kwargs)
    x = am.probe_input(clf)
    assert am.gradcam_vs_library(clf, x, [1, 7], reshape=reshape) < 1e-4
    maps = am.answers(clf, x, [1], ["gradcam"])
    assert maps == {"gradcam": "ok"}


def test_a_layout_error_cannot_pass_the_spatial_check():
    """Read wrong, the same features fail the check they pass when read right: Swin's channels-last stage
    read as NCHW (the old silent bug) and a ViT's token grid transposed."""
    swin = am.build("swin_tiny_patch4_window7_224", 224)
    assert am.quadrant_share(swin) > 0.5
    assert am.quadrant_share(swin, reshape=lambda t: t) < 0.2  # 7 rows as channels, 768 channels as columns
    vit = am.build("vit_tiny_patch16_224", 128)
    rs = vit.reshape_transform
    assert am.quadrant_share(vit) > 0.5
    assert am.quadrant_share(vit, reshape=lambda t: rs(t).transpose(-1, -2)) < 0.2


def test_levit_gives_a_map_not_a_library_traceback():
    import ic_zoo

    clf = am.build("levit_128s", 224)
    out = ic_zoo.instance("explainer", "gradcam").explain(clf, am.probe_input(clf), [2])
    assert out.raw.shape == (1, 224, 224) and torch.isfinite(torch.from_numpy(out.raw)).all()


def test_a_layout_that_cannot_be_verified_is_refused_in_one_sentence():
    """A model whose feature_info points at a layer that is not its feature map, and which gives no map
    to check against: the CAM family is refused (one sentence naming the model), classification works."""
    import timm

    import ic_zoo
    from ic_zoo.classifiers.tapping import derive_tap

    model = timm.create_model("crossvit_tiny_240", pretrained=False, num_classes=4).eval()
    model.forward_intermediates = None  # the model's own map is not available
    tap = derive_tap(model, "timm:crossvit_tiny_240", (240, 240))
    assert tap.layer is None and am.one_sentence(tap.refusal) and "timm:crossvit_tiny_240" in tap.refusal
    clf = am.build("crossvit_tiny_240", None)
    if clf.cam_refusal:  # (derived and verified here; the refusal path is the one above)
        assert am.one_sentence(ic_zoo.instance("explainer", "gradcam").supports(clf))


def test_a_headless_checkpoint_is_named_with_the_fine_tuned_tags_on_every_surface(capsys):
    import ic_zoo
    from ic_zoo import zoo
    from ic_zoo.cli import main as cli_main

    for call in (lambda: ic_zoo.create("classifier", "timm:eva02_tiny_patch14_224", pretrained=False),
                 lambda: zoo.resolve_model("timm:eva02_tiny_patch14_224", pretrained=False),
                 lambda: zoo.resolve_model("timm:eva02_tiny_patch14_224.mim_in22k", pretrained=True)):
        with pytest.raises(ic_zoo.IcZooError) as info:
            call()
        msg = str(info.value)
        assert am.one_sentence(msg) and "without a classification head" in msg
        assert "timm:eva02_tiny_patch14_336.mim_in22k_ft_in1k" in msg
    capsys.readouterr()
    assert cli_main(["classify", "--no-pretrained", "-m", "timm:eva02_tiny_patch14_224",
                     str(ROOT / "examples" / "coffee.jpg")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "eva02_tiny_patch14_336.mim_in22k_ft_in1k" in err and "\n" not in err


def _hand_attention(clf, x) -> list:
    """Each block's attention of a timm ViT whose blocks use timm's plain ``Attention``, recomputed by hand
    from the block's input: softmax(q k^T / sqrt(d)) (q, k through the module's own q/k norms)."""
    from timm.layers import Attention

    mods = [m for m in clf.model.modules() if type(m) is Attention]
    assert mods, "this reference is for plain timm attention"
    atts = []

    def hook(mod, inputs):
        t = inputs[0]
        b, n, c = t.shape
        qkv = mod.qkv(t).reshape(b, n, 3, mod.num_heads, c // mod.num_heads).permute(2, 0, 3, 1, 4)
        q, k = mod.q_norm(qkv[0]), mod.k_norm(qkv[1])
        atts.append(((q * mod.scale) @ k.transpose(-2, -1)).softmax(-1).detach())

    handles = [m.register_forward_pre_hook(hook) for m in mods]
    try:
        with torch.no_grad():
            clf.forward(x)
    finally:
        for h in handles:
            h.remove()
    return atts


@pytest.mark.parametrize("name,kwargs,prefix,grid", [
    ("vit_small_patch14_reg4_dinov2", {"img_size": (70, 112)}, 5, (5, 8)),
    ("deit_tiny_distilled_patch16_224", {"img_size": (96, 64)}, 2, (6, 4)),
])
def test_rollout_reads_the_class_token_past_registers_and_distillation_tokens(name, kwargs, prefix, grid):
    """Rollout by hand (Abnar & Zuidema, Eq. 1-2) from attention recomputed from each block's input, the
    class token's row over the patch tokens after ``prefix`` others: equal to the library's rollout."""
    import numpy as np

    import ic_zoo
    from ic_zoo.explainers._base import resize_maps

    clf = am.build(name, None, **kwargs)
    x = am.probe_input(clf)
    n = prefix + grid[0] * grid[1]
    r = torch.eye(n, dtype=torch.float64)
    for a in _hand_attention(clf, x):
        a = 0.5 * a[0].mean(0).double() + 0.5 * torch.eye(n, dtype=torch.float64)
        r = (a / a.sum(-1, keepdim=True)) @ r
    hand = np.maximum(r[0, prefix:].numpy().reshape(1, *grid), 0).astype(np.float32)
    ours = ic_zoo.instance("explainer", "rollout").explain(clf, x, [0]).raw
    assert np.allclose(ours, resize_maps(hand, (x.shape[-1], x.shape[-2])), rtol=1e-4, atol=1e-7)
    # the map taken one token off (the old fixed prefix of 1) differs: the check can fail
    off = np.maximum(r[0, 1:1 + grid[0] * grid[1]].numpy().reshape(1, *grid), 0).astype(np.float32)
    assert not np.allclose(ours, resize_maps(off, (x.shape[-1], x.shape[-2])), rtol=1e-3)


def test_the_class_token_explainers_refuse_a_register_model_without_a_class_token():
    import ic_zoo

    clf = am.build("vit_medium_patch16_reg4_gap_256", 96, depth=2)
    for name in ("rollout", "chefer"):
        why = ic_zoo.instance("explainer", name).supports(clf)
        assert why and am.one_sentence(why) and "no class token" in why
    assert ic_zoo.instance("explainer", "legrad").supports(clf) is None  # it reads every token through the head
