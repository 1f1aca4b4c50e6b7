"""LaMa (Suvorov et al. 2022, "Resolution-robust large mask inpainting with Fourier convolutions").

Uses the public TorchScript export ``big-lama.pt`` that IOPaint uses, downloaded on first use into
``$IC_ZOO_CACHE/lama`` (default ``~/.cache/ic_zoo/lama``) and checked against its known MD5 before it
is loaded. ``IC_ZOO_LAMA_URL`` / ``IC_ZOO_LAMA_MD5`` point at a mirror (same variables as IOPaint's
``LAMA_MODEL_URL`` / ``LAMA_MODEL_MD5``). The model takes RGB in [0, 1] and a binary mask, both padded
to a multiple of 8, and returns RGB in [0, 1].
"""
from __future__ import annotations

import os
import threading
import warnings

import numpy as np

from ..registry import register
from ._base import DEFAULT_WORK_SIZE, Inpainter

LAMA_URL = "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt"
LAMA_MD5 = "e3aa4aaa15225a33ec84f9f4bc47e500"
LAMA_SIZE = "196 MB"


def lama_url() -> str:
    return os.environ.get("IC_ZOO_LAMA_URL") or os.environ.get("LAMA_MODEL_URL") or LAMA_URL


def lama_md5() -> str:
    return os.environ.get("IC_ZOO_LAMA_MD5") or os.environ.get("LAMA_MODEL_MD5") or LAMA_MD5


def lama_path():
    from ..weights import ic_zoo_cache_dir, url_filename

    return ic_zoo_cache_dir() / "lama" / url_filename(lama_url())


def _reason() -> str | None:
    from ..weights import url_weights_reason

    return url_weights_reason(lama_url(), lama_path().parent, LAMA_SIZE)


@register("inpainter", "lama", requires=("torch",), check=_reason,
          description="LaMa big-lama (TorchScript, as in IOPaint): learned large-mask inpainting; 196 MB download")
class LaMa(Inpainter):
    pad_multiple = 8

    def __init__(self, device: str | None = None, work_size: int | None = DEFAULT_WORK_SIZE) -> None:
        super().__init__(work_size)
        self._device = device
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        import torch

        from ..weights import download_checked

        if self._model is None:
            path = download_checked("lama", lama_url(), lama_path(), md5=lama_md5(), size_hint=LAMA_SIZE,
                                    alternative="or choose another inpainter (telea, patchmatch...)")
            dev = torch.device(self._device or ("cuda" if torch.cuda.is_available() else "cpu"))
            with warnings.catch_warnings():  # big-lama.pt is TorchScript; torch now nudges towards export
                warnings.simplefilter("ignore", FutureWarning)
                self._model = torch.jit.load(str(path), map_location=dev).eval()
            self._dev = dev
        return self._model

    def _inpaint(self, image, mask):
        import torch

        with self._lock:
            model = self._load()
            img = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255.0).to(self._dev)
            msk = torch.from_numpy(mask.astype(np.float32))[None, None].to(self._dev)
            with torch.inference_mode():
                res = model(img, msk)
        res = res[0].permute(1, 2, 0).float().cpu().numpy()
        return np.clip(res * 255.0, 0, 255).astype(np.uint8)
