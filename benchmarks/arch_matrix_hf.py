"""The architecture matrix's Hugging Face rows: the ViT family as ``hf-hub:`` models and zero-shot CLIP.

Tiny random configs (2 blocks, width 32, 8 px patches) of ViT (a non-square 32 x 48 input), DeiT distilled
(``DeiTForImageClassificationWithTeacher``: class + distillation tokens), BEiT, DINOv2, DINOv2 with
registers (3 registers, 32 x 48), ``CLIPForImageClassification`` and a ``CLIPModel`` with its tokenizer for
``clip:<repo>=cat,dog,bird`` are written into a temporary Hugging Face hub cache, then built through the
library's real loading path (``ic_zoo.create(..., pretrained=True)`` from that cache, offline). Each row is
``arch_matrix.row_for``'s record (layout, each interactive explainer's answer, Grad-CAM against
pytorch-grad-cam, the spatial check) with the family (``hf:<model_type>``, or ``clip zero-shot``) and the
name typed. The weights come from torch seed 0, so the rows are the same on every run.

    python benchmarks/arch_matrix_hf.py    # prints the rows as JSON
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import string
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

ORG = "ic-zoo-matrix"
KW = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
LABELS = {0: "cat", 1: "dog", 2: "cow", 3: "bird"}
ZERO_SHOT = ("cat", "dog", "bird")

# repo name: (model class, config class, config kwargs, processor input (h, w))
CASES = {
    "tiny-vit": ("ViTForImageClassification", "ViTConfig", dict(image_size=[32, 48], patch_size=8, **KW), (32, 48)),
    "tiny-deit-distilled": ("DeiTForImageClassificationWithTeacher", "DeiTConfig",
                            dict(image_size=32, patch_size=8, **KW), (32, 32)),
    "tiny-beit": ("BeitForImageClassification", "BeitConfig",
                  dict(image_size=32, patch_size=8, use_relative_position_bias=True, **KW), (32, 32)),
    "tiny-dinov2": ("Dinov2ForImageClassification", "Dinov2Config", dict(image_size=32, patch_size=8, **KW), (32, 32)),
    "tiny-dinov2-registers": ("Dinov2WithRegistersForImageClassification", "Dinov2WithRegistersConfig",
                              dict(image_size=32, patch_size=8, num_register_tokens=3, **KW), (32, 48)),
    "tiny-clip-classifier": ("CLIPForImageClassification", "CLIPConfig",
                             dict(vision_config=dict(image_size=32, patch_size=8, **KW)), (32, 32)),
}


def write_snapshot(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay out the files of ``folder`` as the Hugging Face hub cache ``cache`` does (refs/main ->
    snapshots/<commit>/<file>), as tests/conftest.py's ``_write_hf_snapshot`` does for the tests."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for f in sorted(folder.iterdir()):
        if f.is_file():
            (snap / f.name).write_bytes(f.read_bytes())
    return snap


def _write_classifier(cache: Path, work: Path, repo: str, case) -> str:
    import torch
    import transformers

    model_cls, cfg_cls, kw, (h, w) = case
    torch.manual_seed(0)
    cfg = getattr(transformers, cfg_cls)(**kw, num_labels=len(LABELS), id2label=LABELS,
                                         label2id={v: k for k, v in LABELS.items()})
    net = getattr(transformers, model_cls)(cfg)
    d = work / repo
    net.save_pretrained(d)
    if cfg_cls == "CLIPConfig":
        transformers.CLIPImageProcessor(size={"shortest_edge": h}, crop_size={"height": h, "width": w}).save_pretrained(d)
    else:
        transformers.ViTImageProcessor(size={"height": h, "width": w}).save_pretrained(d)
    write_snapshot(cache, f"{ORG}/{repo}", d)
    return str(cfg.model_type)


def _write_clip(cache: Path, work: Path, repo: str) -> None:
    """A CLIPModel with a character-vocabulary tokenizer and its image processor (as tests/test_clip.py)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    d = work / repo
    d.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase) + list(".,'-")
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (work / "vocab.json").write_text(json.dumps(vocab))
    (work / "merges.txt").write_text("#version: 0.2\n")  # no merges: every word is spelt out
    tok = CLIPTokenizer(str(work / "vocab.json"), str(work / "merges.txt"))
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), max_position_embeddings=40, **KW, **ids),
                     vision_config=dict(image_size=32, patch_size=8, **KW), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    write_snapshot(cache, f"{ORG}/{repo}", d)


@contextlib.contextmanager
def temporary_hub_cache():
    """A fresh, empty Hugging Face hub cache for the duration, offline (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE,
    IC_ZOO_OFFLINE, and huggingface_hub's constants read at import); all restored after. Yields the cache."""
    from huggingface_hub import constants

    keys = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "IC_ZOO_OFFLINE")
    env = {k: os.environ.get(k) for k in keys}
    const = {k: getattr(constants, k) for k in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    with tempfile.TemporaryDirectory(prefix="ic_zoo_arch_matrix_hf_") as tmp:
        home = Path(tmp) / "hf"
        cache = home / "hub"
        cache.mkdir(parents=True)
        try:
            os.environ.update({"HF_HOME": str(home), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
                               "IC_ZOO_OFFLINE": "1"})
            constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(home), str(cache), True
            yield cache
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for k, v in const.items():
                setattr(constants, k, v)


def hf_rows(names: list[str]) -> list[dict]:
    """One ``arch_matrix.row_for`` record per Hugging Face case, with ``family`` (``hf:<model_type>`` or
    ``clip zero-shot``), ``model`` (the name typed) and ``size`` (None: the processor's own size)."""
    import torch

    import arch_matrix
    import ic_zoo

    rows = []
    with temporary_hub_cache() as cache, tempfile.TemporaryDirectory(prefix="ic_zoo_arch_matrix_hf_work_") as w:
        work = Path(w)
        built = []
        for repo, case in CASES.items():
            built.append((f"hf:{_write_classifier(cache, work, repo, case)}", f"hf-hub:{ORG}/{repo}"))
        _write_clip(cache, work, "tiny-clip")
        built.append(("clip zero-shot", f"clip:{ORG}/tiny-clip={','.join(ZERO_SHOT)}"))
        for family, name in built:
            torch.manual_seed(0)
            clf = ic_zoo.create("classifier", name, pretrained=True, device="cpu")
            rows.append({"family": family, "model": name, "size": None, **arch_matrix.row_for(clf, names)})
    return rows


def main() -> int:
    import arch_matrix

    t0 = time.time()
    rows = hf_rows(arch_matrix.interactive_explainers())
    print(json.dumps({"rows": rows, "seconds": round(time.time() - t0, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
