"""The real pretrained loading paths, run offline against caches this test suite fills itself."""
from __future__ import annotations

import time

import pytest
import torch

import ic_zoo
from ic_zoo.errors import WeightsUnavailableError


def _same_weights(model, state_dict) -> bool:
    got = model.state_dict()
    return all(torch.equal(got[k].cpu(), v.cpu()) for k, v in state_dict.items() if k in got) and \
        set(state_dict) <= set(got)


@pytest.mark.parametrize("name", ["squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k"])
def test_pretrained_true_loads_cached_weights(imagenet_weights, name):
    clf = ic_zoo.create("classifier", name, pretrained=True)
    assert clf.pretrained and clf.weights_source != "random"
    assert _same_weights(clf.model, imagenet_weights[name])
    assert ic_zoo.get_spec("classifier", name).unavailable_reason() is None


def test_missing_weights_offline_one_sentence_fast(imagenet_weights):
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        ic_zoo.create("classifier", "vit_base_patch16_224.augreg2_in21k_ft_in1k", pretrained=True)
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    from huggingface_hub import constants

    assert "vit_base_patch16_224.augreg2_in21k_ft_in1k" in msg and constants.HF_HUB_CACHE in msg
    assert "--no-pretrained" in msg and "\n" not in msg
    reason = ic_zoo.get_spec("classifier", "vit_base_patch16_224.augreg2_in21k_ft_in1k").unavailable_reason()
    assert "needs a download" in reason


def test_missing_torchvision_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch"))
    with pytest.raises(WeightsUnavailableError) as info:
        ic_zoo.create("classifier", "squeezenet1_1", pretrained=True)
    assert str(tmp_path / "empty_torch") in str(info.value) and "squeezenet1_1" in str(info.value)


@pytest.fixture(scope="module")
def tiny_hf_models(hf_snapshot, tmp_root):
    """Two tiny transformers classifiers (a ViT and a ResNet) saved with save_pretrained and placed
    in the hub cache, as a download would have left them."""
    from transformers import (ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification, ViTConfig,
                              ViTForImageClassification, ViTImageProcessor)

    torch.manual_seed(0)
    out = {}
    labels = {0: "cat", 1: "dog", 2: "cow"}
    vit = ViTForImageClassification(ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=64, num_labels=3,
                                              id2label=labels, label2id={v: k for k, v in labels.items()}))
    resnet = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                       num_labels=3, id2label=labels,
                                                       label2id={v: k for k, v in labels.items()}))
    procs = {"vit": ViTImageProcessor(size={"height": 64, "width": 64}),
             "resnet": ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875)}
    for key, model in (("vit", vit), ("resnet", resnet)):
        d = tmp_root / f"hf_{key}"
        model.save_pretrained(d)
        procs[key].save_pretrained(d)
        hf_snapshot(f"test-org/tiny-{key}", {p.name: p for p in d.iterdir() if p.is_file()})
        out[key] = model.state_dict()
    return out


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_hf_hub_from_pretrained(tiny_hf_models, photo, kind):
    clf = ic_zoo.create("classifier", f"hf-hub:test-org/tiny-{kind}", pretrained=True)
    assert _same_weights(clf.model, tiny_hf_models[kind])
    assert clf.labels == ["cat", "dog", "cow"] and clf.family == ("vit" if kind == "vit" else "cnn")
    x = clf.preprocess(photo)
    assert x.shape == (1, 3, 64, 64)
    assert clf.predict(photo).logits.shape == (3,)
    if kind == "resnet":  # ConvNext-style processor: resize short side to 64/0.875, centre crop 64
        assert clf.geometry.resize == 73 and clf.geometry.crop == (64, 64)


def test_hf_hub_unknown_repo_offline():
    with pytest.raises(WeightsUnavailableError, match="hf-hub:nobody/nothing"):
        ic_zoo.create("classifier", "hf-hub:nobody/nothing", pretrained=True)


def test_cached_weights_load_offline_without_switching_the_hub_client_off(imagenet_weights, tiny_hf_models,
                                                                          monkeypatch):
    """Before: a check that found the hub unreachable set HF_HUB_OFFLINE for the whole process (every
    other library's hub calls with it). Now the cached files are loaded from the cache by the call that
    needs them (timm's ``file``, transformers' ``local_files_only``) and nothing else changes."""
    import os

    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("IC_ZOO_OFFLINE", "1")  # the hub is unreachable (as on this machine)
    t0 = time.perf_counter()
    clf = ic_zoo.create("classifier", "resnet50.a1_in1k", pretrained=True)
    hf = ic_zoo.create("classifier", "hf-hub:test-org/tiny-vit", pretrained=True)
    assert time.perf_counter() - t0 < 60
    assert _same_weights(clf.model, imagenet_weights["resnet50.a1_in1k"])
    assert _same_weights(hf.model, tiny_hf_models["vit"])
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ
