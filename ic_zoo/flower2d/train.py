"""Training the Flower2D models on a CPU: ``python -m ic_zoo flower2d train --variant V --arch A``.

Data are generated in memory (1,000 training images per class, drawn at 64-128 px and area-averaged
to 64), the test split is held out (200 per class, its own seeds). AdamW with a one-cycle schedule,
horizontal flips. Everything is seeded: the same command on the same machine gives the same weights.
The result is a safetensors file plus a JSON config/model card that travels with it.
"""
from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path


from . import generator as g
from .models import INPUT_SIZE, MEAN, MODEL_PREFIX, STD, build, to_input

RENDER_SIZES = (64, 96, 128)
DEFAULTS = {  # arch -> (epochs, max lr, weight decay)
    "squeezenet": (8, 4e-3, 1e-4),
    "resnet": (6, 3e-3, 1e-4),
    "vit": (12, 2e-3, 0.05),
}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def evaluate(model, images, labels, batch: int = 512) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = to_input(images[i:i + batch])
            correct += int((model(x).argmax(1).numpy() == labels[i:i + batch]).sum())
    return correct / len(images)


def train(variant: str, arch: str, *, seed: int = 0, data_seed: int = 0, epochs: int | None = None,
          n_per_class: int = 1000, n_test_per_class: int = 200, batch: int = 128, out: str | Path | None = None,
          log=print) -> dict:
    import torch
    from safetensors.torch import save_file

    g.variant_info(variant)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    ep_default, lr, wd = DEFAULTS[arch]
    epochs = epochs or ep_default
    C = g.num_classes(variant)
    t0 = time.perf_counter()
    xtr, ytr, _ = g.dataset(variant, "train", n_per_class * C, INPUT_SIZE, seed=data_seed,
                            render_sizes=RENDER_SIZES, with_parts=False, drop=True)
    xte, yte, _ = g.dataset(variant, "test", n_test_per_class * C, INPUT_SIZE, seed=data_seed,
                            render_sizes=RENDER_SIZES, with_parts=False)
    t_data = time.perf_counter() - t0
    log(f"data: {len(xtr)} train / {len(xte)} test images of {variant} in {t_data:.1f} s")
    Xtr = to_input(xtr).contiguous(memory_format=torch.channels_last)  # faster convolutions on CPU
    Ytr = torch.from_numpy(ytr)
    model = build(arch, C).to(memory_format=torch.channels_last)
    steps = epochs * ((len(Xtr) + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    gen = torch.Generator().manual_seed(seed)
    t1 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(Xtr), generator=gen)
        flips = torch.rand(len(Xtr), generator=gen) < 0.5
        total, n = 0.0, 0
        for i in range(0, len(Xtr), batch):
            idx = perm[i:i + batch]
            x = Xtr[idx]
            f = flips[idx]
            x = torch.where(f[:, None, None, None], x.flip(-1), x)
            loss = torch.nn.functional.cross_entropy(model(x), Ytr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        acc = evaluate(model, xte, yte)
        log(f"epoch {ep + 1}/{epochs}: loss {total / n:.4f}, test accuracy {100 * acc:.2f}% "
            f"({time.perf_counter() - t1:.0f} s)")
    t_train = time.perf_counter() - t1
    acc = evaluate(model, xte, yte)
    model.eval()
    card = {
        "name": f"{MODEL_PREFIX[variant]}/{arch}",
        "variant": variant, "arch": arch, "num_classes": C, "labels": g.class_names(variant),
        "input_size": INPUT_SIZE, "mean": list(MEAN), "std": list(STD),
        "test_accuracy": acc, "test_images": len(xte), "train_images": len(xtr),
        "epochs": epochs, "batch": batch, "max_lr": lr, "weight_decay": wd, "seed": seed, "data_seed": data_seed,
        "render_sizes": list(RENDER_SIZES),
        "train_seconds": round(t_train, 1), "data_seconds": round(t_data, 1),
        "command": f"python -m ic_zoo flower2d train --variant {variant} --arch {arch} --seed {seed}"
                   + (f" --epochs {epochs}" if epochs != ep_default else "")
                   + (f" --n-per-class {n_per_class}" if n_per_class != 1000 else ""),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    out_dir = Path(out) if out else WEIGHTS_DIR / variant
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / f"{arch}.safetensors"),
              metadata={"variant": variant, "arch": arch})
    (out_dir / f"{arch}.json").write_text(json.dumps(card, indent=2))
    write_model_card(out_dir)
    log(f"saved {out_dir / (arch + '.safetensors')}: test accuracy {100 * acc:.2f}% after {t_train:.0f} s")
    return card


def write_model_card(folder: Path) -> None:
    """MODEL_CARD.md for every model in ``folder``, from their JSON configs."""
    cards = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if "." not in p.stem]
    if not cards:
        return
    v = cards[0]["variant"]
    lines = [f"# Flower2D models: {v}", "",
             f"Trained by this project on synthetic Flower2D `{v}` images (see `ic_zoo/flower2d/generator.py`); "
             f"{cards[0]['num_classes']} classes: " + "; ".join(cards[0]["labels"]) + ".", "",
             "| model | architecture | parameters | test accuracy | test images | epochs | train time | seed | date | command |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in cards:
        lines.append(f"| `{c['name']}` | {c['arch']} | {c['parameters']:,} | {100 * c['test_accuracy']:.2f}% | "
                     f"{c['test_images']} | {c['epochs']} | {c['train_seconds']:.0f} s | {c['seed']} | {c['date']} | "
                     f"`{c['command']}` |")
    lines += ["", f"Input: 64 x 64 RGB, area-averaged from any size, scaled with mean {cards[0]['mean']} and std "
              f"{cards[0]['std']}. Trained on {cards[0]['machine']}. Weights: safetensors, one file per model.", ""]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    import sys

    train(sys.argv[1], sys.argv[2])
