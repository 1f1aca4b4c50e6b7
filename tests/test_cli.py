"""The command line: list / classify / edit / bench, and one sentence for every bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ic_zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k"]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ic_zoo", *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, **(env or {})), timeout=600)


@pytest.fixture(scope="module")
def files(tmp_path_factory, photo):
    d = tmp_path_factory.mktemp("cli")
    Image.fromarray(photo).save(d / "cat.jpg", quality=95)
    Image.fromarray(photo[:, ::-1]).save(d / "cat2.png")
    m = np.zeros(photo.shape[:2], np.uint8)
    m[80:220, 120:300] = 255  # a hand-made mask over the cat's face
    Image.fromarray(m).save(d / "mask.png")
    Image.fromarray(m[::2, ::2]).save(d / "mask_half.png")
    (d / "notes.jpg").write_text("not an image at all")
    data = (d / "cat.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 3])
    return d


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = {p["name"]: p for p in doc["plugins"]}
    assert {"telea", "gradcam", "squeezenet1_1", "pixelate"} <= set(names)
    assert all("available" in p and "reason" in p and "source" in p for p in doc["plugins"])
    assert doc["failed"] == []
    assert main(["list", "--kind", "explainer"]) == 0
    out = capsys.readouterr().out
    assert "scorecam" in out and "[slow]" in out and "telea" not in out


def test_classify_many_images_json(files, capsys):
    rc = main(["classify", str(files / "cat.jpg"), str(files / "notes.jpg"), str(files / "cat2.png"),
               "--json", "--no-pretrained", "-m", "squeezenet1_1", "-m", "timm:resnet18", "--top-k", "3"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 2  # one bad image: the others are still classified
    ok = [x for x in lines if "top5" in x]
    assert len(ok) == 4 and {x["model"] for x in ok} == {"squeezenet1_1", "timm:resnet18"}
    assert all(len(x["top5"]) == 3 and {"label", "index", "prob"} == set(x["top5"][0]) for x in ok)
    bad = [x for x in lines if "error" in x]
    assert len(bad) == 1 and "not an image" in bad[0]["error"]


@pytest.mark.slow
def test_edit_with_pretrained_weights_from_caches(files, imagenet_weights, tmp_path):
    """The issue's acceptance run: a real photo, a hand-made mask, the three default models with weights
    loaded through pretrained=True from pre-populated caches, the hub offline."""
    out = tmp_path / "out"
    r = cli("edit", str(files / "cat.jpg"), "--mask", str(files / "mask.png"), "--out", str(out),
            "--explainer", "gradcam", *sum((["-m", m] for m in DEFAULT), []))
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "result.json").read_text())
    assert set(doc["models"]) == set(DEFAULT)
    for m, res in doc["models"].items():
        for which in ("original", "modified"):
            top = res[which]["top5"]
            assert len(top) == 5 and all({"label", "index", "prob"} <= set(c) for c in top)
        assert len(res["tracked"]) == 5 and {"delta_pp", "delta_logit", "delta_rank"} <= set(res["tracked"][0])
        assert res["weights"]["source"] != "random"
        files_ = res["map_files"]
        assert files_ and all((out / f[k]).is_file() for f in files_.values() for k in ("original", "modified",
                                                                                          "difference"))
    assert (out / "modified.png").is_file() and (out / "mask.png").is_file()
    assert doc["timings_ms"]["inpaint"] > 0 and doc["mask_pixels"] == 140 * 180
    assert "Traceback" not in r.stderr


def test_edit_mask_of_another_size_warns(files, tmp_path, capsys):
    rc = main(["edit", str(files / "cat.jpg"), "--mask", str(files / "mask_half.png"), "--no-pretrained",
               "-m", "squeezenet1_1", "--out", str(tmp_path / "o"), "--inpainter", "ns", "--param", "radius=5"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning:" in err and "resizing the mask" in err
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["inpainter_params"] == {"radius": 5}


@pytest.mark.parametrize("case", ["not_image", "truncated", "too_large", "missing", "bad_mask", "unknown_model",
                                  "unknown_inpainter", "offline_weights"])
def test_bad_inputs_get_one_sentence(files, tmp_path, case, capsys):
    args = ["edit", str(files / "cat.jpg"), "--mask", str(files / "mask.png"), "--no-pretrained",
            "-m", "squeezenet1_1", "--out", str(tmp_path / "o")]
    env = {}
    if case == "not_image":
        args[1] = str(files / "notes.jpg")
    elif case == "truncated":
        args[1] = str(files / "cut.jpg")
    elif case == "too_large":
        env["IC_ZOO_MAX_PIXELS"] = "10000"
    elif case == "missing":
        args[1] = str(files / "nope.jpg")
    elif case == "bad_mask":
        args[3] = str(files / "notes.jpg")
    elif case == "unknown_model":
        args[6] = "no_such_model"
    elif case == "unknown_inpainter":
        args += ["--inpainter", "nope"]
    elif case == "offline_weights":
        args.remove("--no-pretrained")
        args[6 - 1] = "vit_base_patch16_224.augreg2_in21k_ft_in1k"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rc = main(args)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err


@pytest.mark.slow
def test_bad_input_in_a_fresh_process_has_no_traceback(files):
    r = cli("classify", str(files / "cut.jpg"), "--no-pretrained", "-m", "squeezenet1_1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--no-pretrained", "-m", "squeezenet1_1", "--repeats", "2", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "forward ms" in text and "usual/edit" in text
    doc = json.loads(out.read_text())
    m = doc["models"]["squeezenet1_1"]
    assert m["forward_ms"] > 0 and m["edit_ms"] > 0 and m["usual_ms"] > m["edit_ms"]
    assert m["max_abs_diff"] < 1e-4
    assert doc["totals"]["usual_over_edit"] > 1


@pytest.mark.parametrize("param, words", [("radius=-5", "radius must be positive"),
                                          ("foo=1", "has no parameter 'foo'; it takes radius, work_size")])
def test_bad_inpainter_parameters_are_one_line_and_exit_2(param, words, tmp_path, capsys):
    """Before: a ValueError / TypeError from the constructor: 'unexpected failure', exit 1."""
    from ic_zoo.cli import main

    img = tmp_path / "img.png"
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(img)
    m = np.zeros((64, 64), np.uint8)
    m[20:40, 20:40] = 255
    Image.fromarray(m).save(mask)
    code = main(["edit", str(img), "--mask", str(mask), "--param", param, "-m", "flower2d/squeezenet",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err


def test_a_mask_given_as_a_list(tmp_path):
    from ic_zoo.errors import MaskError
    from ic_zoo.session import Session

    s = Session(np.full((16, 16, 3), 100, np.uint8), device="cpu")
    with pytest.raises(MaskError, match="rectangular"):
        s.apply([[1, 0], [1]], "mean_fill")
    grid = [[1 if 4 <= y < 8 and 4 <= x < 8 else 0 for x in range(16)] for y in range(16)]
    s.apply(grid, "mean_fill")  # before: an AttributeError
    assert len(s.edits) == 1 and s.edits[0].mask.sum() == 16


def test_latency_table_per_explainer_and_model(tmp_path, capsys):
    """python -m ic_zoo latency: ms per class beyond the forward pass, the ratio to Grad-CAM, JSON and a
    Markdown table from the JSON; an explainer that does not apply is n/a, a skipped cell not run."""
    out = tmp_path / "lat.json"
    assert main(["latency", "-m", "flower2d/squeezenet", "-m", "flower2d/vit", "--explainers", "gradcam", "cam",
                 "occlusion", "--repeats", "1", "--skip", "flower2d/vit:occlusion", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    cell = {(c["model"], c["explainer"]): c for c in doc["cells"]}
    assert cell[("flower2d/squeezenet", "gradcam")]["vs_gradcam"] == pytest.approx(1.0)
    occ = cell[("flower2d/squeezenet", "occlusion")]
    assert occ["ms"] > 0 and occ["passes"] >= 16 and occ["vs_gradcam"] > 1
    assert cell[("flower2d/vit", "cam")]["status"].startswith("n/a")
    assert cell[("flower2d/vit", "occlusion")]["status"] == "not run (--skip)"
    capsys.readouterr()
    md = tmp_path / "lat.md"
    assert main(["latency", "--from-json", str(out), "--markdown", str(md)]) == 0
    table = md.read_text()
    assert "| occlusion |" in table and "not run" in table and "n/a" in table


def test_wrong_types_get_one_sentence(files, tmp_path, capsys):
    """Issue 36 items 6 and 9: an inpainter parameter that is not a number, and --top-k below 1."""
    rc = main(["edit", str(files / "cat.jpg"), "--mask", str(files / "mask.png"), "--no-pretrained",
               "-m", "squeezenet1_1", "--out", str(tmp_path / "o"), "--param", "radius=x"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == "error: The inpainter 'telea' takes radius as a number, not 'x'.", err
    with pytest.raises(SystemExit) as info:
        main(["classify", str(files / "cat.jpg"), "--no-pretrained", "-m", "squeezenet1_1", "--top-k", "-1"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--top-k: must be at least 1, not -1" in err and "Traceback" not in err


def test_classify_says_an_image_is_too_small(tmp_path, capsys):
    """Issue 36 item 9: `edit` and the app warned about a 1x1 image, `classify` dropped the warning."""
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "tiny.png")
    assert main(["classify", str(tmp_path / "tiny.png"), "--no-pretrained", "-m", "flower2d/squeezenet"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "only 1x1 pixels" in err and "Traceback" not in err, err
