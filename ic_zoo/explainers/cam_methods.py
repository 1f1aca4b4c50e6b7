"""The pytorch-grad-cam methods, by name, for every classifier (CNNs and ViTs alike).

The CAM math is pytorch-grad-cam's own (``get_cam_image``, ``scale_cam_image``,
``aggregate_multi_layers``); what changes is where activations and gradients come from. The usual
call makes one full forward and one full backward (parameters included) per class. Here the edit's
single forward pass taps the target layer, and the gradients of all requested classes are taken from
the logits back to that layer only, in one batched sweep. Maps equal the library's to float precision
(tests check 1e-4).

Slow methods (Score-CAM, Ablation-CAM, FullGrad) need many extra passes by design; they run through
the library's own call, with progress reported per batch and hooks always released.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..registry import register
from ._base import ExplainOutput, Explainer, Progress, input_size_wh, resize_maps
from .cam_base import GradientCAM

# name -> (pytorch_grad_cam class, label, uses gradients)
FAST_METHODS = {
    "gradcam": ("GradCAM", "Grad-CAM (Selvaraju et al. 2017)", True),
    "gradcam++": ("GradCAMPlusPlus", "Grad-CAM++ (Chattopadhyay et al. 2018)", True),
    "hirescam": ("HiResCAM", "HiResCAM (Draelos & Carin 2020): gradient x activation, faithful", True),
    "xgradcam": ("XGradCAM", "XGrad-CAM (Fu et al. 2020)", True),
    "layercam": ("LayerCAM", "LayerCAM (Jiang et al. 2021): positive gradients x activations", True),
    "eigencam": ("EigenCAM", "Eigen-CAM (Muhammad & Yeasin 2020): first principal component; class-agnostic",
                 False),
    "eigengradcam": ("EigenGradCAM", "Eigen-Grad-CAM: principal component of gradient x activation", True),
    "gradcamelementwise": ("GradCAMElementWise", "Grad-CAM element-wise (ReLU of gradient x activation)", True),
    "fem": ("FEM", "FEM (Fuad et al. 2020): channels weighted by how often they exceed mean + 2 std; class-agnostic",
            False),
    "kpcacam": ("KPCA_CAM", "KPCA-CAM (Karmani et al. 2024): first kernel principal component of the activations; "
                "class-agnostic", False),
}
SLOW_METHODS = {
    "scorecam": ("ScoreCAM", "Score-CAM (Wang et al. 2020): one forward per channel, gradient-free"),
    "ablationcam": ("AblationCAM", "Ablation-CAM (Desai & Ramaswamy 2020): one forward per ablated channel"),
    "fullgrad": ("FullGrad", "FullGrad (Srinivas & Fleuret 2019): input and all bias gradients"),
    "shapleycam": ("ShapleyCAM", "ShapleyCAM (Cai 2025): weights from the gradient and a Hessian-vector product, "
                   "Grad-CAM read as a Shapley value; a second backward per class"),
}


class _QuietTqdm:
    """Stands in for the ``tqdm`` module inside pytorch-grad-cam. In a thread that ic_zoo is running a
    slow method in, progress goes to that call's callback and nothing is printed; anywhere else (another
    user of pytorch-grad-cam in the same process) it is the real ``tqdm``, bars and all."""

    local = threading.local()

    def __init__(self, real=None) -> None:
        self.real = real

    def __getattr__(self, name):  # tqdm.auto, tqdm.trange, ...: the real module's
        if self.real is None:
            raise AttributeError(name)
        return getattr(self.real, name)

    def tqdm(self, iterable, *args, **kwargs):
        cb = getattr(self.local, "callback", None)
        if cb is None and self.real is not None:
            return self.real.tqdm(iterable, *args, **kwargs)
        return self._report(iterable, cb)

    @staticmethod
    def _report(iterable, cb):
        items = list(iterable)
        n = max(len(items), 1)
        for i, item in enumerate(items):
            if cb is not None:
                cb(i / n)
            yield item
        if cb is not None:
            cb(1.0)


_QUIET = _QuietTqdm()


def _silence_library_tqdm() -> None:
    import pytorch_grad_cam.ablation_cam as ab
    import pytorch_grad_cam.score_cam as sc

    if _QUIET.real is None:
        _QUIET.real = sc.tqdm if not isinstance(sc.tqdm, _QuietTqdm) else None
    sc.tqdm = _QUIET
    ab.tqdm = _QUIET


class LibraryCAM(GradientCAM):
    """A pytorch-grad-cam method fed from one tapped forward pass (interactive): the base's taps, the
    library's own map math."""

    def __init__(self, name: str, class_name: str, uses_gradients: bool, description: str = "") -> None:
        self.name = name
        self.class_name = class_name
        self.uses_gradients = uses_gradients
        self.description = description

    def _lib(self, clf):
        """A library object used only for its math (its hooks are released at once), kept with the
        classifier."""
        def make():
            import pytorch_grad_cam

            lib = getattr(pytorch_grad_cam, self.class_name)(
                model=clf.logits_module(), target_layers=clf.target_layers, reshape_transform=clf.reshape_transform)
            lib.activations_and_grads.release()
            return lib

        return clf.cached(f"pytorch-grad-cam {self.class_name}", make)

    def from_run(self, clf, run, x, classes: Sequence[int]) -> ExplainOutput:
        classes = [int(c) for c in classes]
        n = len(clf.target_layers)
        with clf.lock:
            grads = run.grads(classes, list(range(n))) if self.uses_gradients else [None] * n
        return self._maps(clf, run, x, classes, grads)

    def contrast_from_run(self, clf, run, x, a: int, b: int) -> ExplainOutput:
        """"Why a rather than b": the method applied to the gradient of logit[a] - logit[b]."""
        if not self.uses_gradients:
            from ..errors import ExplainerNotSupportedError

            raise ExplainerNotSupportedError(f"{self.name} does not use gradients, so it cannot contrast two classes; "
                                             "use Grad-CAM or HiResCAM.")
        n = len(clf.target_layers)
        with clf.lock:
            g = run.grads([int(a), int(b)], list(range(n)))
        return self._maps(clf, run, x, [int(a)], [gi[0:1] - gi[1:2] for gi in g])

    def _maps(self, clf, run, x, classes: list[int], grads) -> ExplainOutput:
        from pytorch_grad_cam.utils.image import scale_cam_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        k = len(classes)
        lib = self._lib(clf)
        rt = clf.reshape_transform
        targets = [ClassifierOutputTarget(c) for c in classes]
        size = input_size_wh(x)
        per_layer, raw_layers = [], []
        for i, layer in enumerate(clf.target_layers):
            a = run.acts[i].detach()
            a = rt(a) if rt is not None else a
            acts = np.broadcast_to(a.cpu().float().numpy(), (k,) + tuple(a.shape[1:]))
            g = None
            if grads[i] is not None:
                g = rt(grads[i]) if rt is not None else grads[i]
                g = g.detach().cpu().float().numpy()
            cam = lib.get_cam_image(x, layer, targets, acts, g, False)
            cam = np.maximum(cam, 0)
            if cam.shape[0] != k:  # class-agnostic methods computed once
                cam = np.broadcast_to(cam[:1], (k,) + cam.shape[1:])
            raw_layers.append(resize_maps(cam, size))
            per_layer.append(scale_cam_image(cam, size)[:, None, :])
        normalized = lib.aggregate_multi_layers(per_layer)
        raw = np.mean(raw_layers, axis=0).astype(np.float32)
        return ExplainOutput(raw, np.asarray(normalized, np.float32))


class SlowLibraryCAM(Explainer):
    """A pytorch-grad-cam method run through the library's own call, one class at a time."""

    cost = "slow"

    def __init__(self, name: str, class_name: str, description: str = "") -> None:
        self.name = name
        self.class_name = class_name
        self.description = description

    def supports(self, clf) -> str | None:
        if self.class_name == "FullGrad":
            import torch

            if not any(isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)) and getattr(m, "bias", None) is not None
                       for m in clf.model.modules()):
                return f"FullGrad needs convolution or batch-norm biases, and {clf.name} has none"
            return None
        if self.class_name == "ShapleyCAM" and clf.family == "vit":
            return (f"ShapleyCAM differentiates the gradients a second time, which torch's fused attention in "
                    f"{clf.name} does not support; use it on a CNN")
        return super().supports(clf)

    def _make(self, clf):
        import pytorch_grad_cam
        from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit

        base = getattr(pytorch_grad_cam, self.class_name)
        raw_store: list = []

        class Capturing(base):  # keeps the un-normalised maps beside the library's result
            def get_cam_image(self_inner, *args, **kwargs):
                cam = super().get_cam_image(*args, **kwargs)
                raw_store.append(np.maximum(np.asarray(cam, np.float32), 0))
                return cam

            def aggregate_multi_layers(self_inner, cam_per_target_layer):
                if self.class_name == "FullGrad":  # FullGrad's own aggregate: the sum of its (B, 1, H, W) maps
                    raw_store.append(np.sum(np.asarray(cam_per_target_layer), axis=1).astype(np.float32))
                return super().aggregate_multi_layers(cam_per_target_layer)

        kwargs = dict(model=clf.logits_module(), target_layers=clf.target_layers, reshape_transform=clf.reshape_transform)
        if self.class_name == "AblationCAM":
            kwargs["ablation_layer"] = AblationLayerVit() if clf.reshape_transform is not None else AblationLayer()
        if self.class_name == "FullGrad":
            kwargs["target_layers"] = []
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # FullGrad prints a warning about target layers
            lib = Capturing(**kwargs)
        return lib, raw_store

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        _silence_library_tqdm()
        classes = [int(c) for c in classes]
        size = input_size_wh(x)
        raws, norms = [], []
        import contextlib

        # ShapleyCAM differentiates the gradients themselves (a Hessian-vector product): that needs the
        # graph the frozen parameters do not record, so it runs with them unfrozen (and frozen again after)
        unfrozen = clf.unfrozen() if self.class_name == "ShapleyCAM" else contextlib.nullcontext()
        with clf.lock, unfrozen:
            lib, raw_store = self._make(clf)
            try:
                for j, c in enumerate(classes):  # this thread's library loops report here (never print)
                    _QUIET.local.callback = (lambda f: None) if progress is None else (
                        lambda f, j=j, c=c: progress((j + f) / len(classes),
                                                     f"{self.name}: class {c} ({j + 1}/{len(classes)})"))
                    raw_store.clear()
                    norm = lib(x, [ClassifierOutputTarget(c)])
                    norms.append(np.asarray(norm[0], np.float32))
                    raws.append(resize_maps(raw_store[-1][:1], size)[0] if raw_store else norms[-1])
            finally:
                _QUIET.local.callback = None
                lib.activations_and_grads.release()
                abl = getattr(lib, "ablation_layer", None)
                if abl is not None and any(m is abl for m in lib.model.modules()):
                    for layer in clf.target_layers:  # the library swaps the layer out; never leave it so
                        replace_layer_recursive(lib.model, abl, layer)
                clf.model.zero_grad(set_to_none=True)
        return ExplainOutput(np.stack(raws).astype(np.float32), np.stack(norms).astype(np.float32))


def _register_all() -> None:
    for name, (cls_name, desc, grads) in FAST_METHODS.items():
        register("explainer", name, (lambda n=name, c=cls_name, g=grads, d=desc: LibraryCAM(n, c, g, d)),
                 requires=("pytorch_grad_cam",), description=desc, cost="interactive", library=cls_name)
    for name, (cls_name, desc) in SLOW_METHODS.items():
        register("explainer", name, (lambda n=name, c=cls_name, d=desc: SlowLibraryCAM(n, c, d)),
                 requires=("pytorch_grad_cam",), description=desc, cost="slow", library=cls_name)


_register_all()
