"""The classifier contract shared by every backend (torchvision, timm, transformers, Flower2D, plugins).

A Classifier wraps an ``nn.Module`` with what travels with its weights: the preprocessing (taken from
the model's own config, never re-typed), the labels, the CAM target layer(s) and, for ViTs, the
reshape transform from its patch grid. ``run`` is the single forward pass an edit needs: it returns
the logits and, for the layers an explainer taps, activations from which gradients are available
*only from the output back to that layer* (parameters are frozen, so nothing below is recorded).
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputError


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class InputGeometry:
    """How an image becomes the model input: resize (shorter side, or exact (h, w)), then centre crop.

    ``box`` gives the part of the original image the model actually sees; strokes outside it are
    invisible to that model.
    """

    resize: int | tuple[int, int] | None
    crop: tuple[int, int] | None

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        if self.resize is None:
            return h, w
        if isinstance(self.resize, int):  # torchvision semantics for an int size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize, int(self.resize * long / short)
            return (new_long, new_short) if w <= h else (new_short, new_long)
        return int(self.resize[0]), int(self.resize[1])

    @property
    def input_size(self) -> tuple[int, int]:
        """(h, w) of the model input: the crop, else an exact resize (224 x 224 when only the short side
        is fixed)."""
        if self.crop is not None:
            return int(self.crop[0]), int(self.crop[1])
        return (int(self.resize[0]), int(self.resize[1])) if isinstance(self.resize, tuple) else (224, 224)

    def box(self, h: int, w: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in original-image pixels of the region the model sees."""
        rh, rw = self.resized_size(h, w)
        if self.crop is None:
            top, left, ch, cw = 0, 0, rh, rw
        else:
            ch, cw = self.crop
            top, left = int(round((rh - ch) / 2.0)), int(round((rw - cw) / 2.0))
        sy, sx = h / rh, w / rw
        x0, y0 = max(0.0, left * sx), max(0.0, top * sy)
        x1, y1 = min(float(w), (left + cw) * sx), min(float(h), (top + ch) * sy)
        return (x0, y0, x1, y1)


@dataclass
class ClassScore:
    index: int
    label: str
    prob: float
    logit: float

    def to_dict(self) -> dict:
        return {"label": self.label, "index": self.index, "prob": self.prob, "logit": self.logit}


@dataclass
class Prediction:
    logits: np.ndarray  # (C,) float32
    probs: np.ndarray  # (C,) float32
    labels: Sequence[str]
    _order: np.ndarray | None = field(default=None, repr=False)

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            self._order = np.argsort(-self.logits, kind="stable")
        return self._order

    def topk(self, k: int = 5) -> list[ClassScore]:
        return [self.score(int(i)) for i in self.order[:k]]

    def score(self, index: int) -> ClassScore:
        return ClassScore(index, self.labels[index], float(self.probs[index]), float(self.logits[index]))

    def rank(self, index: int) -> int:
        """1-based rank of ``index`` among all classes."""
        return int(np.nonzero(self.order == index)[0][0]) + 1

    @property
    def top1(self) -> int:
        return int(self.order[0])


class TokenGridReshape:
    """ViT tokens (B, N, C) -> (B, C, gh, gw), dropping the prefix (class / distillation / register) tokens."""

    def __init__(self, grid: tuple[int, int], num_prefix_tokens: int) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_prefix_tokens = int(num_prefix_tokens)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        gh, gw = self.grid
        if t.ndim == 4:  # already spatial
            return t
        tokens = t[:, self.num_prefix_tokens:, :]
        if tokens.shape[1] != gh * gw:  # prefix count not known in advance: take the last gh*gw tokens
            tokens = t[:, -gh * gw:, :]
        return tokens.reshape(t.shape[0], gh, gw, t.shape[2]).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenGridReshape(grid={self.grid}, num_prefix_tokens={self.num_prefix_tokens})"


@dataclass
class CamHead:
    """Where true CAM reads its features and how it turns them into per-class maps.

    ``layer``'s input (``use_input=True``) or output is captured; ``to_maps(features, classes)`` maps it
    to (B, k, h, w) class maps whose spatial mean is the class logit up to the bias (GAP + linear /
    1x1-conv heads).
    """

    layer: torch.nn.Module
    to_maps: Callable[[torch.Tensor, Sequence[int]], torch.Tensor]
    use_input: bool = False


class Run:
    """One forward pass with taps. ``acts[i]`` is the output of ``taps[i]``; for ``grad_taps`` it is a
    leaf that requires grad, so gradients of any logits w.r.t. it cost only the part of the network
    above it."""

    def __init__(self, logits: torch.Tensor, acts: list[torch.Tensor], grad_mask: list[bool]) -> None:
        self.logits = logits
        self.acts = acts
        self.grad_mask = grad_mask

    def grads(self, classes: Sequence[int], taps: Sequence[int] | None = None,
              output: torch.Tensor | None = None) -> list[torch.Tensor]:
        """d logit[c] / d act for each class c: one tensor (k, *act.shape[1:]) per tap, batched in one
        backward sweep (vmap over the output gradients) with a per-class loop as the fallback. ``output``:
        other scores (1, classes) computed from the taps to differentiate instead of the logits (LeGrad
        reads every block's tokens through the head)."""
        out = self.logits if output is None else output
        classes = list(classes)
        v = torch.zeros((len(classes), out.shape[-1]), dtype=out.dtype, device=out.device)
        v[torch.arange(len(classes)), torch.as_tensor(classes, dtype=torch.long)] = 1
        return self.vjp(v, taps, output)

    def vjp(self, vectors: torch.Tensor, taps: Sequence[int] | None = None,
            output: torch.Tensor | None = None) -> list[torch.Tensor]:
        """d (v . logits) / d act for each row v of ``vectors`` (k, classes): what a target that is a
        function of the logits needs (its gradient at the logits, pulled back), in the same one sweep
        (``output``: as in ``grads``)."""
        idx = [i for i in (taps if taps is not None else range(len(self.acts))) if self.grad_mask[i]]
        inputs = [self.acts[i] for i in idx]
        if not inputs:
            return []
        sel = (self.logits if output is None else output)[0]
        vectors = vectors.to(dtype=sel.dtype, device=sel.device)
        k = vectors.shape[0]
        try:
            grads = torch.autograd.grad(sel, inputs, grad_outputs=vectors, retain_graph=True, is_grads_batched=True,
                                        allow_unused=True)
            out = [g[:, 0] if g is not None else torch.zeros((k,) + a.shape[1:], dtype=a.dtype, device=a.device)
                   for g, a in zip(grads, inputs)]
        except RuntimeError:
            per = [torch.autograd.grad(sel, inputs, grad_outputs=vectors[j], retain_graph=True, allow_unused=True)
                   for j in range(k)]
            out = []
            for t, a in enumerate(inputs):
                out.append(torch.cat([p[t] if p[t] is not None else torch.zeros_like(a) for p in per], 0))
        return out


class Classifier:
    """A model with what travels with its weights, built in one call (as timm's ``build_model_with_cfg``
    builds a model from its ``PretrainedCfg``)::

        Classifier(model, labels, transform, InputGeometry(256, (224, 224)), [model.layer4[-1]],
                   name="my-resnet", norm=((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))

    ``model`` returns logits (B, C) (override :meth:`forward` when it returns an object, as transformers
    models do); ``labels`` names the C classes; ``transform`` turns a PIL image into the input tensor, the
    model's own preprocessing; ``geometry`` says which part of the image the input shows;
    ``target_layers`` are modules of ``model`` that the CAM family taps; ``reshape_transform`` turns a
    ViT's tokens into a (B, C, h, w) grid. ``norm`` is the input's (mean, std) in [0, 1] units (read off a
    ``Normalize`` step of ``transform`` when not given). The model is put in eval mode on ``device`` with
    its parameters frozen. A model whose feature maps cannot be read right may give no target layers and
    ``cam_refusal``, the sentence the CAM family answers with. ``tap_layout`` says in one line how the
    target layer's output is read ("" until the backend that chose the layer sets it). Subclasses add
    :meth:`cam_head` (true CAM) or :meth:`forward`.
    """

    shared_between_tabs = True  # one instance serves every tab (memsize.nbytes does not count it)

    def __init__(self, model: torch.nn.Module, labels: Sequence[str], transform: Callable[[Image.Image], torch.Tensor],
                 geometry: InputGeometry, target_layers: Sequence[torch.nn.Module], *, name: str = "",
                 reshape_transform: Callable | None = None, norm: tuple | None = None, family: str | None = None,
                 pretrained: bool = False, weights_source: str = "random",
                 device: torch.device | str | None = None, cam_refusal: str | None = None) -> None:
        from ..errors import PluginContractError

        what = f"classifier '{name}'" if name else "a classifier"
        if not isinstance(model, torch.nn.Module):
            raise PluginContractError(f"{what} needs an nn.Module as its model, not a {type(model).__name__}")
        labels = [str(label) for label in labels]
        if not labels:
            raise PluginContractError(f"{what} has no class labels")
        if not isinstance(geometry, InputGeometry):
            raise PluginContractError(f"{what} needs its geometry as an InputGeometry(resize, crop)")
        modules = {id(m) for m in model.modules()}
        target_layers = list(target_layers)
        if (not target_layers and not cam_refusal) or any(id(t) not in modules for t in target_layers):
            raise PluginContractError(f"{what} needs target layers that are modules of its model")
        #: why the CAM family is not offered for this model (no target layer whose layout could be
        #: verified), one sentence; None when ``target_layers`` are given
        self.cam_refusal = None if target_layers else cam_refusal
        #: how the CAM target layer's output is read, one line: "NCHW (<module>)", "NHWC (<module>)" or
        #: "tokens: <p> prefix + <h> x <w> grid (<module>)"; set by the backend that derived the layer,
        #: "" when it does not say
        self.tap_layout: str = ""
        self.name = name  # the registered name, as for every plugin kind
        self.labels = labels
        self.transform = transform
        self.geometry = geometry
        self.target_layers = target_layers
        self.reshape_transform = reshape_transform
        self.norm = norm if norm is not None else _norm_of(transform)
        self.family = family or ("vit" if reshape_transform is not None else "cnn")
        self.pretrained = bool(pretrained)
        self.weights_source = weights_source if pretrained else "random"
        self.device = torch.device(device) if device is not None else default_device()
        # eval() and to() work in place, so the target layers stay the model's own modules
        self.model = model.eval().to(self.device)
        # Frozen parameters: a forward builds no autograd graph unless a tap starts one.
        self.model.requires_grad_(False)
        self._fresh_caches()

    def _fresh_caches(self) -> None:
        self.lock = threading.RLock()
        self._weights_hash: str | None = None
        self._cache: dict[str, Any] = {}

    def cached(self, name: str, make: Callable[[], Any]) -> Any:
        """What ``make()`` returns, made once per classifier and kept with it (an explainer's fitted
        state, a derived model): dropped with the classifier, never shared with a copy."""
        with self.lock:
            if name not in self._cache:
                self._cache[name] = make()
            return self._cache[name]

    def forget(self, name: str) -> None:
        """Drop what :meth:`cached` keeps under ``name`` (it is made again on next use)."""
        with self.lock:
            self._cache.pop(name, None)

    def logits_module(self) -> torch.nn.Module:
        """An ``nn.Module`` whose forward is :meth:`forward` (logits), for libraries that take a module
        (pytorch-grad-cam, Captum) when the model itself returns an object."""
        return self.cached("logits_module", lambda: _LogitsModule(self))

    # -- input -------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self.geometry.input_size

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 H x W x 3 -> the model's input batch (1, 3, h, w) on the model's device."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError("classifiers take RGB uint8 images of shape H x W x 3.")
        x = self.transform(Image.fromarray(image))
        if x.ndim == 3:
            x = x.unsqueeze(0)
        return x.to(self.device, non_blocking=True)

    def tensor_to_image(self, x: torch.Tensor) -> np.ndarray:
        """The model-input batch (1, 3, h, w) back to RGB uint8 (h, w, 3): what the model sees."""
        mean = torch.tensor(self.norm[0], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.norm[1], device=x.device).view(1, 3, 1, 1)
        img = ((x.detach() * std + mean).clamp(0, 1) * 255 + 0.5)[0].permute(1, 2, 0)
        return img.to(torch.uint8).cpu().numpy()

    def image_to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """RGB uint8 images (N, h, w, 3) already at the model-input size -> normalised batch."""
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.norm[0], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.norm[1], device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def input_box(self, shape: tuple[int, ...]) -> tuple[float, float, float, float]:
        return self.geometry.box(int(shape[0]), int(shape[1]))

    # -- inference ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C). Subclasses whose model returns an object (transformers) override this."""
        return self.model(x)

    def predict_tensor(self, x: torch.Tensor) -> Prediction:
        with self.lock, torch.inference_mode():
            logits = self.forward(x)
        return self.prediction(logits)

    def predict(self, image: np.ndarray) -> Prediction:
        return self.predict_tensor(self.preprocess(image))

    def probabilities(self, images: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
        """Every class's probability on each image, (N, C): :meth:`predict`'s ``probs`` for each, the images
        preprocessed alike and passed through the model ``batch`` at a time."""
        out = []
        for i in range(0, len(images), batch):
            x = torch.cat([self.preprocess(im) for im in images[i:i + batch]])
            with self.lock, torch.inference_mode():
                out.append(torch.softmax(self.forward(x).detach().float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def prediction(self, logits: torch.Tensor) -> Prediction:
        """Logits (1, C), from :meth:`forward` or a :meth:`run`, as a Prediction (probabilities, top-k)."""
        lg = logits.detach()[0].float()
        probs = torch.softmax(lg, dim=0)
        return Prediction(lg.cpu().numpy(), probs.cpu().numpy(), self.labels)

    def run(self, x: torch.Tensor, taps: Sequence[torch.nn.Module] = (), grad: Sequence[bool] | bool = True,
            use_input: Sequence[bool] | None = None, during: Callable | None = None) -> Run:
        """One forward pass capturing the outputs (or inputs) of ``taps``.

        Taps with ``grad`` start a graph there (activation detached and made a leaf that requires
        grad), unless an earlier tap's graph already reaches them (then gradients reach both); ``during``
        makes a context manager held around the pass (a TapSpec's ``during``); hooks are registered for this call only and always removed. Callers hold ``self.lock``
        for as long as they use the returned Run, so concurrent calls never share hooks or graphs.
        """
        taps = list(taps)
        grad_mask = [grad] * len(taps) if isinstance(grad, bool) else list(grad)
        inp_mask = [False] * len(taps) if use_input is None else list(use_input)
        acts: list[torch.Tensor | None] = [None] * len(taps)
        handles = []
        owner = threading.get_ident()

        def make_hook(i: int):
            def out_hook(module, inputs, output):
                if threading.get_ident() != owner:
                    return None
                t = output[0] if isinstance(output, (tuple, list)) else output
                if not grad_mask[i]:
                    acts[i] = t
                    return None
                if t.requires_grad:  # a graph an earlier tap started reaches here: keep it, so both get gradients
                    acts[i] = t
                else:
                    acts[i] = t.detach().requires_grad_(True)
                t = acts[i].clone()  # later in-place ops (ReLU(inplace=True)) must not touch the tap
                if isinstance(output, tuple):
                    return (t,) + tuple(output[1:])
                if isinstance(output, list):
                    return [t] + list(output[1:])
                return t

            def in_hook(module, inputs):
                if threading.get_ident() != owner:
                    return None
                t = inputs[0]
                if grad_mask[i]:
                    acts[i] = t if t.requires_grad else t.detach().requires_grad_(True)
                    return (acts[i].clone(),) + tuple(inputs[1:])
                acts[i] = t
                return None

            return out_hook, in_hook

        with self.lock:
            try:
                for i, layer in enumerate(taps):
                    out_hook, in_hook = make_hook(i)
                    if inp_mask[i]:
                        handles.append(layer.register_forward_pre_hook(in_hook))
                    else:
                        handles.append(layer.register_forward_hook(out_hook))
                ctx = torch.enable_grad() if any(grad_mask) else torch.no_grad()
                with ctx, (during() if during is not None else contextlib.nullcontext()):
                    logits = self.forward(x)
            finally:
                for h in handles:
                    h.remove()
        missing = [i for i, a in enumerate(acts) if a is None]
        if missing:
            raise RuntimeError(f"{self.name}: tapped layer(s) {missing} did not run in the forward pass")
        return Run(logits, acts, grad_mask)

    # -- explanation support -----------------------------------------------------------------
    def cam_head(self) -> CamHead | None:
        """True-CAM head, or None when the head is not global pooling + linear/1x1 conv."""
        return None

    def unfrozen(self):
        """Context manager: parameters require grad (for libraries that backprop the usual way)."""
        clf = self

        class _Unfrozen:
            def __enter__(self_inner):
                clf.lock.acquire()
                clf.model.requires_grad_(True)
                return clf

            def __exit__(self_inner, *exc):
                clf.model.requires_grad_(False)
                clf.model.zero_grad(set_to_none=True)
                clf.lock.release()
                return False

        return _Unfrozen()

    def with_randomized_head(self, seed: int = 0) -> "Classifier":
        """A copy whose classification head (the last linear / conv layer) has fresh random weights: the
        model-parameter randomisation test of Adebayo et al. (2018). A map that barely changes under it
        does not depend on what the model learned."""
        import copy

        names = {id(m): n for n, m in self.model.named_modules()}
        model = copy.deepcopy(self.model)
        head = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) * head.weight.std().clamp(min=1e-3))
            if head.bias is not None:
                head.bias.zero_()
        clone = copy.copy(self)
        clone.model = model
        clone.name = f"{self.name} (randomised head)"
        clone._fresh_caches()
        clone.target_layers = [model.get_submodule(names[id(m)]) for m in self.target_layers]
        return clone

    def weights_hash(self) -> str:
        """sha256 (first 16 hex digits) of the parameters and buffers, for provenance in exports."""
        if self._weights_hash is None:
            h = hashlib.sha256()
            for name, t in sorted(self.model.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            self._weights_hash = h.hexdigest()[:16]
        return self._weights_hash

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pretrained={self.pretrained} on {self.device}>"


class _LogitsModule(torch.nn.Module):
    def __init__(self, clf: Classifier) -> None:
        super().__init__()
        self.inner = clf.model  # registered, so .modules() / hooks see the real layers
        self._clf = [clf]  # not a submodule

    def forward(self, x):
        return self._clf[0].forward(x)


def _norm_of(transform) -> tuple:
    """(mean, std) of the last ``Normalize`` step of a torchvision ``Compose``, else no normalisation."""
    for step in reversed(getattr(transform, "transforms", [transform])):
        if type(step).__name__ == "Normalize":
            return tuple(float(v) for v in step.mean), tuple(float(v) for v in step.std)
    return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def paste_maps(maps: np.ndarray, box: tuple[float, float, float, float], shape: tuple[int, int]) -> np.ndarray:
    """Maps at model-input resolution (k, h, w) -> image coordinates (k, H, W); zero outside ``box``."""
    import cv2

    H, W = int(shape[0]), int(shape[1])
    x0, y0, x1, y1 = box
    ix0, iy0 = int(np.floor(x0 + 1e-6)), int(np.floor(y0 + 1e-6))
    ix1, iy1 = int(np.ceil(x1 - 1e-6)), int(np.ceil(y1 - 1e-6))
    ix1, iy1 = max(ix1, ix0 + 1), max(iy1, iy0 + 1)
    out = np.zeros((maps.shape[0], H, W), np.float32)
    for i, m in enumerate(maps):
        r = cv2.resize(np.asarray(m, np.float32), (ix1 - ix0, iy1 - iy0), interpolation=cv2.INTER_LINEAR)
        out[i, iy0:iy1, ix0:ix1] = r[: H - iy0, : W - ix0]
    return out


def geometry_from_transform(tf) -> InputGeometry:
    """Read resize / centre-crop sizes off a torchvision ``Compose`` (timm's eval transforms are one)."""
    from torchvision import transforms as T

    resize: int | tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    for step in getattr(tf, "transforms", [tf]):
        if isinstance(step, T.Resize):
            size = step.size
            if isinstance(size, int):
                resize = size
            elif len(size) == 1:
                resize = int(size[0])
            else:
                resize = (int(size[0]), int(size[1]))
        elif isinstance(step, T.CenterCrop):
            size = step.size
            crop = (int(size[0]), int(size[-1]))
        elif type(step).__name__ in ("ResizeKeepRatio", "CenterCropOrPad", "TrimBorder", "ResizeToSequence"):
            raise ValueError(f"cannot derive the input geometry from {type(step).__name__}")
    return InputGeometry(resize, crop)
