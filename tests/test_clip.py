"""Zero-shot CLIP as a classifier (``clip:<repo id>=<class>,<class>,...``), offline: a tiny random CLIPModel,
its tokenizer (a character vocabulary) and image processor in the hub cache. Its ranking equals
CLIPModel's own; Grad-CAM equals pytorch-grad-cam with a reshape written here; the attention explainers
run on the image tower; every bad name is one sentence on every surface."""
from __future__ import annotations

import copy
import json
import string

import numpy as np
import pytest
import torch

import ic_zoo

REPO = "test-org/tiny-clip"
NAME = f"clip:{REPO}=cat,dog,bird"


@pytest.fixture(scope="module")
def clip_repo(hf_snapshot, tmp_root):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer, ViTConfig

    d = tmp_root / "hf_tiny_clip"
    d.mkdir(exist_ok=True)
    chars = list(string.ascii_lowercase) + list(".,'-")
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")  # no merges: every word is spelt out
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    torch.manual_seed(0)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=40, **ids),
                     vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2), projection_dim=16)
    out = d / "snap"
    CLIPModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    hf_snapshot(REPO, {p.name: p for p in out.iterdir() if p.is_file()})
    # a repo that is not CLIP (an image classifier's config) and a CLIP repo with its config only
    hf_snapshot("test-org/a-vit", {"config.json": json.dumps(ViTConfig(num_labels=2).to_dict() | {
        "architectures": ["ViTForImageClassification"]}).encode()})
    hf_snapshot("test-org/clip-config-only", {"config.json": (out / "config.json").read_bytes()})
    return out


@pytest.fixture(scope="module")
def clf(clip_repo):
    return ic_zoo.create("classifier", NAME, pretrained=True, device="cpu")


@pytest.fixture(scope="module")
def x(clf):
    return clf.preprocess(np.random.default_rng(5).integers(0, 255, (48, 60, 3), dtype=np.uint8))


def test_the_ranking_is_clips_own(clip_repo, clf, x):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    assert clf.labels == ["cat", "dog", "bird"] and clf.name == NAME and clf.family == "vit"
    model, proc = CLIPModel.from_pretrained(clip_repo).eval(), CLIPProcessor.from_pretrained(clip_repo)
    img = np.random.default_rng(6).integers(0, 255, (48, 60, 3), dtype=np.uint8)
    inputs = proc(text=[f"a photo of a {n}." for n in clf.labels], images=Image.fromarray(img), return_tensors="pt",
                  padding=True)
    with torch.no_grad():
        ref = model(**inputs).logits_per_image[0].numpy()
    pred = clf.predict(img)
    assert np.abs(pred.logits - ref).max() < 1e-4
    assert list(pred.order) == list(np.argsort(-ref, kind="stable"))


def test_gradcam_equals_the_library_with_a_hand_reshape(clf, x):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = clf.model.vision_model.encoder.layers[-1].layer_norm1
    assert clf.target_layers == [layer]
    assert clf.reshape_transform.grid == (4, 4) and clf.reshape_transform.num_prefix_tokens == 1

    def reshape(t):  # the class token dropped, 16 patch tokens to 4 x 4, channels first
        return t[:, 1:, :].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    ours = ic_zoo.instance("explainer", "gradcam").explain(clf, x, [0, 1, 2])
    cam = pytorch_grad_cam.GradCAM(model=clf.model, target_layers=[layer], reshape_transform=reshape)
    try:
        with clf.unfrozen():
            ref = np.stack([cam(x, [ClassifierOutputTarget(c)])[0] for c in [0, 1, 2]])
    finally:
        cam.activations_and_grads.release()
    assert ours.normalized.shape == ref.shape == (3, 32, 32)
    assert np.abs(ours.normalized - ref).max() < 1e-4


def test_the_attention_explainers_work_on_the_image_tower(clf, x):
    from pytorch_grad_cam.utils.image import scale_cam_image

    from ic_zoo.explainers.attention import _head_of_tokens, _hf_run

    vision = copy.deepcopy(clf.model.vision_model)
    vision.set_attn_implementation("eager")
    with torch.no_grad():
        atts = vision(pixel_values=x, output_attentions=True).attentions
    roll = np.eye(17)
    for a in atts:
        m = 0.5 * a[0].double().mean(0).numpy() + 0.5 * np.eye(17)
        roll = (m / m.sum(-1, keepdims=True)) @ roll
    expect = scale_cam_image(scale_cam_image(np.maximum(roll[0, 1:], 0).reshape(1, 4, 4).astype(np.float32), (32, 32)))
    out = ic_zoo.instance("explainer", "rollout").explain(clf, x, [0])
    assert np.abs(out.normalized[0] - expect[0]).max() < 1e-4
    with clf.lock:  # LeGrad's lens on the last layer's tokens is the classifier's own head
        run = _hf_run(clf, x, False, True)
        assert torch.allclose(_head_of_tokens(clf)(run.acts[-1]), run.logits, atol=1e-5)
    for name in ("chefer", "legrad"):
        ex = ic_zoo.instance("explainer", name)
        assert ex.supports(clf) is None, name
        maps = ex.explain(clf, x, [0, 2])
        assert maps.raw.shape == (2, 32, 32) and np.isfinite(maps.raw).all() and maps.raw.max() > 0, name
    assert clf.model.config._attn_implementation == clf.model.vision_model.config._attn_implementation != "eager"


def test_a_session_explains_it(clf):
    from ic_zoo.session import Session

    s = Session(np.random.default_rng(7).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    m = s.explain(NAME, 1, explainer="gradcam")
    assert m.raw_original.shape == clf.input_size and np.isfinite(m.raw_original).all()


BAD = {
    f"clip:{REPO}": "names no classes",
    f"clip:{REPO}=": "names no classes",
    f"clip:{REPO}=cat": "one class only",
    f"clip:{REPO}=cat,,dog": "an empty class name",
    f"clip:{REPO}=cat, dog,Cat": "the class 'Cat' twice",
    "clip:not a repo=cat,dog": "is not a Hugging Face repo id",
    "clip:test-org/a-vit=cat,dog": "not a CLIP model",
    "clip:test-org/nowhere=cat,dog": "cannot be reached",
    "clip:test-org/clip-config-only=cat,dog": "cannot load here",
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_name_is_one_sentence_everywhere(clip_repo, name, tmp_path, capsys):
    from ic_zoo.cli import main
    from ic_zoo.zoo import resolve_model

    for call in (lambda: resolve_model(name), lambda: ic_zoo.create("classifier", name, device="cpu")):
        with pytest.raises(ic_zoo.IcZooError) as info:  # the name check (CLI, app picker) and the library
            call()
        msg = str(info.value)
        assert BAD[name] in msg and "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0, msg
    img = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    assert main(["classify", str(img), "-m", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and BAD[name] in err[0], err


def test_the_namespace_alone_is_one_sentence(clip_repo):
    from ic_zoo.zoo import resolve_model

    with pytest.raises(ic_zoo.UnknownPluginError, match="needs a name after the colon"):
        resolve_model("clip:")
    with pytest.raises(ic_zoo.UnknownPluginError, match="names no classes"):
        ic_zoo.create("classifier", "clip:")


def test_the_cli_classifies_with_typed_classes(clip_repo, tmp_path, capsys):
    from PIL import Image

    from ic_zoo.cli import main

    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(8).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    assert main(["classify", str(img), "-m", NAME, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["model"] == NAME and {c["label"] for c in doc["top5"]} == {"cat", "dog", "bird"}


def test_the_app_picker_and_its_environment_take_the_name(clip_repo, monkeypatch):
    import app as app_module
    from ic_zoo.app.main.context import AppContext

    monkeypatch.setenv("IC_ZOO_MODELS", f"{NAME}; squeezenet1_1")  # semicolons: the commas are the classes'
    assert app_module.parse_args([]).model == [NAME, "squeezenet1_1"]
    ctx = AppContext(models=[NAME])
    assert ctx.check_models([NAME]) == [NAME] and ctx.clf(NAME).labels == ["cat", "dog", "bird"]
    with pytest.raises(ic_zoo.IcZooError, match="names one class only"):  # the picker's check of a typed name
        ctx.check_models([f"clip:{REPO}=cat"])
