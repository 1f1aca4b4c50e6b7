"""Score-CAM and Ablation-CAM as fast as they can honestly be.

Both weigh each channel of the target layer by a forward pass: Score-CAM masks the input with the
channel's upsampled, min-max normalised activation and reads the class score; Ablation-CAM removes the
channel and reads the drop. pytorch-grad-cam's calls do that once per class, with a fixed batch size, and
Ablation-CAM runs the whole network for every ablated channel. Here, with the same maps (tests check the
library's unbatched output to 1e-4):

* the channel passes are made once and read for every requested class (k classes cost one sweep);
* the batch size is tuned to the machine on the first call, from the call's own batches (sizes grow while
  the time per pass falls), and kept with the classifier;
* Ablation-CAM computes the layers before the target layer once, on the one image, and only the rest of
  the network on the ablated batch (the target layer's output is replaced batch-wide, and whatever
  bypasses it, a residual stream, broadcasts): exact, and on ResNet-50 the rest is a pooling and a linear
  layer. A network where that does not hold (the batch comes out wrong) runs whole, as the library does.

The ``-topk`` variants are approximations, named as such: only the ``k`` channels whose activation varies
most over the image (spatial standard deviation; default 32) get a pass, since a channel that is the same
everywhere says nothing about where; ranking by the mean activation instead, right for a CNN's ReLU
features, picks a ViT's large constant LayerNorm channels and its maps fall below random (measured); Score-CAM gives the others weight zero (its softmax runs over the k),
Ablation-CAM gives them no drop (as the library's ``ratio_channels_to_ablate`` does). What that costs on
Flower2D is measured by explain-bench (README).

One deliberate difference from the library: when the target layer's activations can be negative, the
library ablates with ``min - 1e7`` but, inside a batch, each ablation lowers the minimum the next one
reads, so the value depends on the batch size; here it is ``min - 1e7`` of the one image, every time,
which is what the library computes unbatched.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..registry import register
from ._base import ExplainOutput, Explainer, Progress, input_size_wh, normalize_like_library, resize_maps

ABLATION_VALUE = 1e7
DEFAULT_TOPK = 32


class BatchTuner:
    """Picks a batch size from the work itself: the first call tries growing sizes and keeps the one with
    the least time per pass; later calls use it. ``sizes`` are the candidates, smallest first."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        self.trials: dict[int, float] = {}
        self.best: int | None = None

    def size(self) -> int:
        if self.best is not None:
            return self.best
        for s in self.sizes:
            if s not in self.trials:
                return s
        return self.sizes[-1]

    def record(self, size: int, n: int, seconds: float) -> None:
        if self.best is not None or n < size:  # a short last batch says nothing about its size
            return
        self.trials[size] = seconds / n
        done = [s for s in self.sizes if s in self.trials]
        faster = len(done) < 2 or self.trials[done[-1]] < 0.95 * min(self.trials[s] for s in done[:-1])
        if not faster or len(done) == len(self.sizes):
            self.best = min(done, key=lambda s: self.trials[s])


#: candidate batch sizes, smallest first: Score-CAM's passes are whole forward passes; Ablation-CAM's are
#: only the layers after the target, while each batch also pays one pass of the layers below it, so it
#: gains from far larger batches
SIZES = {("scorecam", "cpu"): (4, 8, 16, 32, 64), ("scorecam", "gpu"): (16, 32, 64, 128, 256),
         ("ablationcam", "cpu"): (16, 64, 256, 512), ("ablationcam", "gpu"): (64, 256, 1024)}


def batch_tuner(clf, kind: str) -> BatchTuner:
    sizes = SIZES[(kind, "cpu" if clf.device.type == "cpu" else "gpu")]
    return clf.cached(f"channel-cam batch size ({kind})", lambda: BatchTuner(sizes))


def _top_channels(acts: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the channels to pass: all, or the k whose activation varies most over the image
    (ascending order)."""
    c = acts.shape[1]
    if k is None or k >= c:
        return np.arange(c)
    return np.sort(np.argsort(-acts[0].reshape(c, -1).std(axis=1), kind="stable")[:k])


class _ChannelCAM(Explainer):
    kind = ""  # (slow: declared once, where each variant is registered)

    def __init__(self, name: str, description: str = "", k: int | None = None) -> None:
        if k is not None and (int(k) != k or k < 1):
            from ..errors import InputError

            raise InputError(f"{name} takes k, the number of channels to pass, as a whole number of at least 1.")
        self.name = name
        self.description = description
        self.k = None if k is None else int(k)

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        import torch

        classes = [int(c) for c in classes]
        size = input_size_wh(x)
        rt = clf.reshape_transform
        per_layer, raw_layers = [], []
        with clf.lock, torch.inference_mode():
            run = clf.run(x, clf.target_layers, False)
            logits = run.logits.float()
            n_layers = len(clf.target_layers)
            for li, layer in enumerate(clf.target_layers):
                raw_out = run.acts[li].detach().clone()
                acts = (rt(raw_out) if rt is not None else raw_out).cpu().float().numpy()
                channels = _top_channels(acts, self.k)

                def report(f, li=li):
                    if progress is not None:
                        progress((li + f) / n_layers, f"{self.name}: {int(f * len(channels))}/{len(channels)} channels"
                                 + (f" (layer {li + 1}/{n_layers})" if n_layers > 1 else ""))

                weights = self._weights(clf, x, layer, raw_out, acts, channels, logits, classes, report)
                cam = np.maximum((weights[:, :, None, None] * acts).sum(axis=1), 0).astype(np.float32)
                per_layer.append(cam)
                raw_layers.append(resize_maps(cam, size))
        if progress is not None:
            progress(1.0, f"{self.name}: done")
        return ExplainOutput(np.mean(raw_layers, axis=0).astype(np.float32), normalize_like_library(per_layer, size))

    def _sweep(self, clf, channels: np.ndarray, step, report) -> np.ndarray:
        """Runs ``step(chunk) -> logits (len(chunk), classes)`` over the channels in tuned batches."""
        tuner = batch_tuner(clf, self.kind)
        out, i = [], 0
        report(0.0)
        while i < len(channels):
            b = tuner.size()
            chunk = channels[i:i + b]
            t = time.perf_counter()
            out.append(step(chunk).float().cpu())
            tuner.record(b, len(chunk), time.perf_counter() - t)
            i += len(chunk)
            report(i / len(channels))
        return np.concatenate([o.numpy() for o in out]) if out else np.zeros((0, clf.num_classes), np.float32)


class FastScoreCAM(_ChannelCAM):
    """Score-CAM (Wang et al. 2020): each channel's weight is the softmax, over channels, of the class score
    of the input masked by that channel's normalised activation."""

    kind = "scorecam"

    def _weights(self, clf, x, layer, raw_out, acts, channels, logits, classes, report):
        import torch

        a = torch.from_numpy(np.ascontiguousarray(acts[:, channels])).to(x.device)
        up = torch.nn.UpsamplingBilinear2d(size=x.shape[-2:])(a)  # the library's upsampling
        flat = up.view(up.size(0), up.size(1), -1)
        mins, maxs = flat.min(dim=-1)[0][:, :, None, None], flat.max(dim=-1)[0][:, :, None, None]
        masks = ((up - mins) / (maxs - mins + 1e-8))[0]  # (k, H, W)

        def step(chunk_idx):
            pos = torch.as_tensor(np.searchsorted(channels, chunk_idx), device=x.device)
            return clf.forward(x * masks[pos][:, None])

        scores = torch.from_numpy(self._sweep(clf, channels, step, report))  # (k, classes)
        w = np.zeros((len(classes), acts.shape[1]), np.float32)
        w[:, channels] = torch.softmax(scores[:, classes].T, dim=-1).numpy()
        return w


class FastAblationCAM(_ChannelCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): each channel's weight is the relative drop of the class score
    when that channel is removed from the target layer."""

    kind = "ablationcam"

    def _weights(self, clf, x, layer, raw_out, acts, channels, logits, classes, report):
        import torch

        vit = clf.reshape_transform is not None  # tokens (1, N, C): channels are the last axis
        value = 0.0 if float(raw_out.min()) == 0 else float(raw_out.min()) - ABLATION_VALUE
        rows = np.arange(len(channels))
        state = {"calls": 0, "chunk": None}

        def hook(module, inputs, output):
            state["calls"] += 1
            chunk = state["chunk"]
            batch = raw_out.repeat((len(chunk),) + (1,) * (raw_out.dim() - 1))
            idx = torch.as_tensor(chunk, device=batch.device)
            r = torch.as_tensor(rows[:len(chunk)], device=batch.device)
            if vit:
                batch[r, :, idx] = value
            else:
                batch[r, idx] = value
            return batch

        whole = clf.cached("ablationcam runs whole", lambda: {"layers": set()})
        handle = layer.register_forward_hook(hook)
        try:
            def step(chunk):
                state["chunk"], state["calls"] = chunk, 0
                if id(layer) not in whole["layers"]:
                    try:
                        out = clf.forward(x)  # the layers before the target once, the rest on the batch
                    except RuntimeError:  # something bypassing the layer kept the batch of one
                        out = None
                    if out is not None and out.shape[0] == len(chunk) and state["calls"] == 1:
                        return out
                    whole["layers"].add(id(layer))  # from now on this network runs whole
                    state["calls"] = 0
                return clf.forward(x.repeat(len(chunk), 1, 1, 1))

            scores = self._sweep(clf, channels, step, report)  # (k, classes)
        finally:
            handle.remove()
        orig = logits[0, classes].cpu().numpy().astype(np.float32)  # (n,)
        ablated = np.repeat(orig[:, None], acts.shape[1], axis=1)
        ablated[:, channels] = scores[:, classes].T
        # the library's relative drop; a logit of exactly 0 (a ReLU head) makes it 0/0 there, and since the
        # map is scaled per class, dividing by 1 instead gives the same map the limit would
        denom = np.where(orig == 0, 1.0, orig).astype(np.float32)
        return ((orig[:, None] - ablated) / denom[:, None]).astype(np.float32)


def _register_all() -> None:
    for cls, name, paper in ((FastScoreCAM, "scorecam", "Score-CAM (Wang et al. 2020): one forward per channel, "
                              "gradient-free"),
                             (FastAblationCAM, "ablationcam", "Ablation-CAM (Desai & Ramaswamy 2020): one pass per "
                              "ablated channel, through the layers after the target only")):
        desc = paper + "; every class from one sweep, batch size tuned to the machine"
        register("explainer", name, (lambda cls=cls, name=name, desc=desc, k=None: cls(name, desc, k)),
                 requires=("pytorch_grad_cam",), description=desc, cost="slow", library=cls.__name__)
        approx = (f"{paper.split(' (')[0]}, fast approximation: only the {DEFAULT_TOPK} channels that vary most "
                  "over the image get a pass (k=...)")
        register("explainer", name + "-topk",
                 (lambda cls=cls, name=name, approx=approx, k=DEFAULT_TOPK: cls(name + "-topk", approx, k)),
                 requires=("pytorch_grad_cam",), description=approx, cost="slow", library=cls.__name__)


_register_all()
