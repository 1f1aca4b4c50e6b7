"""The pytorch-grad-cam methods, by name, for every classifier (CNNs and ViTs alike).

The CAM math is pytorch-grad-cam's own (``get_cam_image``, ``scale_cam_image``,
``aggregate_multi_layers``); what changes is where activations and gradients come from. The usual
call makes one full forward and one full backward (parameters included) per class. Here the edit's
single forward pass taps the target layer, and the gradients of all requested classes are taken from
the logits back to that layer only, in one batched sweep. Maps equal the library's to float precision
(tests check 1e-4).

FinerCAM (a target that is a function of all the logits) and RefineCAM (a product over several layers)
take the same path: the target's gradient at the logits is pulled back in the one sweep, and RefineCAM's
layers are all tapped in the one forward pass.

FullGrad and ShapleyCAM need gradients the tapped pass does not give (all biases; a second derivative);
they run through the library's own call, with progress per class and hooks always released. Score-CAM
and Ablation-CAM are in ``channel_cams``.
"""
from __future__ import annotations

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
    "fullgrad": ("FullGrad", "FullGrad (Srinivas & Fleuret 2019): input and all bias gradients"),
    "shapleycam": ("ShapleyCAM", "ShapleyCAM (Cai 2025): weights from the gradient and a Hessian-vector product, "
                   "Grad-CAM read as a Shapley value; a second backward per class"),
}

FINERCAM = ("FinerCAM (Zhang et al. 2025): Grad-CAM of the class against its three most similar classes, "
            "what sets it apart from the ones it is confused with")
REFINECAM = ("RefineCAM (2026): the product of Grad-CAM++ maps of the target layer and the stage ends before it, "
             "early-layer detail denoised by the later layers")


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


class FinerLibraryCAM(LibraryCAM):
    """FinerCAM (pytorch-grad-cam 1.5.7): Grad-CAM of the library's ``FinerWeightedTarget``, the class's
    logit against its most similar classes (the three whose logits are closest), weighted by their
    probabilities: what sets the class apart from the ones it is confused with. The target's gradient at
    the logits is pulled back to the layer in the tapped pass's one sweep."""

    alpha = 1.0
    comparisons = (1, 2, 3)  # ranks by closeness of the logit; rank 0 is the class itself

    def __init__(self, name: str, description: str = "") -> None:
        super().__init__(name, "GradCAM", True, description)

    def _targets(self, logits: np.ndarray, classes: list[int]):
        """The library's own choice of the comparison classes (FinerCAM.forward with ``target_idx``)."""
        from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

        cats = [c for c in self.comparisons if c < len(logits)]
        out = []
        for c in classes:
            order = np.argsort(np.abs(logits - logits[c]))
            out.append(FinerWeightedTarget(int(order[0]), [int(order[i]) for i in cats], self.alpha))
        return out

    def _pulled_back(self, run, targets, n: int):
        import torch

        z = run.logits[0].detach().float().clone().requires_grad_(True)
        vs = torch.stack([torch.autograd.grad(t(z), z)[0] for t in targets])  # d target / d logits
        return run.vjp(vs, list(range(n)))

    def from_run(self, clf, run, x, classes: Sequence[int]) -> ExplainOutput:
        classes = [int(c) for c in classes]
        n = len(clf.target_layers)
        targets = self._targets(run.logits[0].detach().float().cpu().numpy(), classes)
        with clf.lock:
            grads = self._pulled_back(run, targets, n)
        return self._maps(clf, run, x, classes, grads)

    def contrast_from_run(self, clf, run, x, a: int, b: int) -> ExplainOutput:
        """"Why a rather than b": FinerCAM with b as the one comparison class."""
        from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

        n = len(clf.target_layers)
        with clf.lock:
            grads = self._pulled_back(run, [FinerWeightedTarget(int(a), [int(b)], self.alpha)], n)
        return self._maps(clf, run, x, [int(a)], grads)


def refine_layers(clf, n: int = 3) -> list:
    """The layers RefineCAM multiplies: the target layer and the ends of the stages before it. For a CNN,
    the last module at each of the ``n`` coarsest spatial sizes (found by one probe pass, kept with the
    classifier); for a ViT, the target layer's namesakes in the last ``n`` blocks."""
    import torch

    def find():
        target = clf.target_layers[-1]
        names = {id(m): k for k, m in clf.model.named_modules()}
        tname = names.get(id(target), "")
        if clf.family == "vit":
            parts = tname.split(".")
            at = max((i for i, p in enumerate(parts) if p.isdigit()), default=None)
            if at is None:
                return [target]
            mods = dict(clf.model.named_modules())
            last = int(parts[at])
            picked = [mods.get(".".join(parts[:at] + [str(i)] + parts[at + 1:]))
                      for i in range(max(0, last - n + 1), last + 1)]
            return [p for p in picked if p is not None]
        seen: list = []  # (module, spatial size) as each module's forward ends

        def note(mod, inputs, out):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[0] == 1:  # (not patches folded into
                seen.append((mod, tuple(out.shape[-2:])))  # the batch, as HaloNet and MobileViT do inside)

        hooks = [mod.register_forward_hook(note) for mod in clf.model.modules() if mod is not clf.model]
        try:
            with clf.lock, torch.inference_mode():
                clf.forward(torch.zeros((1, 3) + tuple(clf.input_size), device=clf.device))
        finally:
            for h in hooks:
                h.remove()
        calls: dict = {}
        for mod, _ in seen:
            calls[id(mod)] = calls.get(id(mod), 0) + 1
        at = [i for i, (mod, _) in enumerate(seen) if mod is target]
        if not at:  # the target gives no plain NCHW map to line the earlier stages up with
            return [target]
        upto = max(at)
        final = seen[upto][1]
        ends: dict = {}
        for mod, hw in seen[:upto]:
            if calls[id(mod)] == 1 and hw[0] > final[0]:  # a module run twice (a shared ReLU) cannot be tapped
                ends[hw] = mod  # the last module to finish at each size: the end of that stage
        return [ends[hw] for hw in list(ends)[-(n - 1):]] + [target] if n > 1 else [target]

    return clf.cached(f"refine layers {n}", find)


class RefineLibraryCAM(LibraryCAM):
    """RefineCAM (pytorch-grad-cam 1.5.7): the product of Grad-CAM++ maps of several layers, from the
    stage ends before the target layer up to it; the early layers' detail, denoised by the later ones.
    All layers are tapped in the one forward pass, their gradients taken in the one sweep."""

    def __init__(self, name: str, description: str = "") -> None:
        super().__init__(name, "GradCAMPlusPlus", True, description)

    def supports(self, clf) -> str | None:
        reason = super().supports(clf)
        if reason is None and clf.family != "vit" and clf.reshape_transform is not None:
            return (f"RefineCAM reads the stages before {clf.name}'s target layer as NCHW maps, and its target is "
                    f"read as {getattr(clf, 'tap_layout', 'a reshaped layer')}; use Grad-CAM")
        if reason is None and len(refine_layers(clf)) < 2:
            return f"RefineCAM multiplies maps of several layers, and no layer before {clf.name}'s target was found"
        return reason

    def taps(self, clf):
        from ._base import TapSpec

        layers = refine_layers(clf)
        return TapSpec(list(layers), [True] * len(layers), [False] * len(layers))

    def from_run(self, clf, run, x, classes: Sequence[int]) -> ExplainOutput:
        from pytorch_grad_cam.utils.image import scale_cam_image

        classes = [int(c) for c in classes]
        layers = refine_layers(clf)
        with clf.lock:
            grads = run.grads(classes, list(range(len(layers))))
        product = None
        for i, layer in enumerate(layers):
            one = _OneLayer(run, i)
            maps = self._maps(_Layers(clf, [layer]), one, x, classes, [grads[i]]).normalized
            product = maps if product is None else product * maps
        return ExplainOutput(product.astype(np.float32), np.asarray(scale_cam_image(product), np.float32))

    def contrast_from_run(self, clf, run, x, a: int, b: int) -> ExplainOutput:
        from ..errors import ExplainerNotSupportedError

        raise ExplainerNotSupportedError("RefineCAM multiplies maps of one class; use Grad-CAM or FinerCAM to "
                                         "contrast two classes.")


class _OneLayer:
    """One tap of a Run, seen as a run with that tap only."""

    def __init__(self, run, i: int) -> None:
        self.acts = [run.acts[i]]
        self.logits = run.logits


class _Layers:
    """A classifier seen with other target layers (for the library's per-layer math)."""

    def __init__(self, clf, layers) -> None:
        self._clf = clf
        self.target_layers = layers

    def __getattr__(self, name):
        return getattr(self._clf, name)


class SlowLibraryCAM(Explainer):
    """A pytorch-grad-cam method run through the library's own call, one class at a time (slow: declared
    where each is registered)."""

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
        if self.class_name == "FullGrad":
            kwargs["target_layers"] = []
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # FullGrad prints a warning about target layers
            lib = Capturing(**kwargs)
        return lib, raw_store

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

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
                for j, c in enumerate(classes):
                    if progress is not None:
                        progress(j / len(classes), f"{self.name}: class {c} ({j + 1}/{len(classes)})")
                    raw_store.clear()
                    norm = lib(x, [ClassifierOutputTarget(c)])
                    norms.append(np.asarray(norm[0], np.float32))
                    raws.append(resize_maps(raw_store[-1][:1], size)[0] if raw_store else norms[-1])
            finally:
                lib.activations_and_grads.release()
                clf.model.zero_grad(set_to_none=True)
        if progress is not None:
            progress(1.0, f"{self.name}: done")
        return ExplainOutput(np.stack(raws).astype(np.float32), np.stack(norms).astype(np.float32))


def _register_all() -> None:
    for name, (cls_name, desc, grads) in FAST_METHODS.items():
        register("explainer", name, (lambda n=name, c=cls_name, g=grads, d=desc: LibraryCAM(n, c, g, d)),
                 requires=("pytorch_grad_cam",), description=desc, cost="interactive", library=cls_name)
    register("explainer", "finercam", lambda: FinerLibraryCAM("finercam", FINERCAM), requires=("pytorch_grad_cam",),
             description=FINERCAM, cost="interactive", library="FinerCAM")
    register("explainer", "refinecam", lambda: RefineLibraryCAM("refinecam", REFINECAM),
             requires=("pytorch_grad_cam",), description=REFINECAM, cost="interactive", library="RefineCAM")
    for name, (cls_name, desc) in SLOW_METHODS.items():
        register("explainer", name, (lambda n=name, c=cls_name, d=desc: SlowLibraryCAM(n, c, d)),
                 requires=("pytorch_grad_cam",), description=desc, cost="slow", library=cls_name)


_register_all()
