"""Reading images and masks from what users send: paths, bytes, file objects, PIL images, arrays.

Conventions everywhere in ic_zoo: images are RGB uint8 H x W x 3; masks are bool H x W (True = remove).
Any image Pillow opens is accepted (JPEG, PNG, WebP, GIF first frame, TIFF; RGBA, palette, grayscale,
CMYK, 16-bit), with its EXIF orientation applied. Files that are not images, truncated files and
images above the pixel limit are refused with one sentence.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import BadImageError, ImageTooLargeError, MaskError

#: Default pixel limit (width x height); about 40 megapixels. IC_ZOO_MAX_PIXELS overrides it.
DEFAULT_MAX_PIXELS = 40_000_000

ImageLike = Union[str, os.PathLike, bytes, BinaryIO, Image.Image, np.ndarray]


def max_pixels_default() -> int:
    try:
        return int(os.environ.get("IC_ZOO_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def _name(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return f"'{Path(src).name}'"
    return "the upload"


def _open(src: ImageLike, max_pixels: int, *, name: str | None = None, formats: tuple[str, ...] | None = None,
          decode: bool = True) -> tuple[Image.Image, str]:
    """Open ``src`` lazily, check its size against ``max_pixels`` from the header alone (before a single
    pixel is decoded), then decode it (unless ``decode`` is false). ``formats`` restricts the decoders
    Pillow may try (the app's editor takes PNG, JPEG and WebP only); ``name`` is how sentences call it."""
    name = name or _name(src)
    if isinstance(src, Image.Image):
        im = src
    else:
        if isinstance(src, (str, os.PathLike)):
            if not Path(src).is_file():
                raise BadImageError(f"{name} does not exist or is not a file.")
        fobj = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is below
                im = Image.open(fobj, formats=list(formats) if formats else None)
        except Image.DecompressionBombError:
            raise ImageTooLargeError(f"{name} is far above the pixel limit of {max_pixels / 1e6:.1f} megapixels "
                                     "(a possible decompression bomb); downscale it first.") from None
        except UnidentifiedImageError:
            kinds = ", ".join(formats) if formats else "PNG, JPEG, WebP, GIF or TIFF"
            raise BadImageError(f"{name} is not an image that can be read here (use {kinds}).") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise BadImageError(f"{name} could not be opened as an image ({exc}).") from None
    try:
        return _checked(im, name, max_pixels, decode)
    except BaseException:
        if im is not src:  # opened here: its file is closed with the refusal (no ResourceWarning later)
            im.close()
        raise


@contextlib.contextmanager
def opened(src: ImageLike, max_pixels: int, **kw):
    """``_open`` as a context: the file it opened is closed at the end, whatever happened (Pillow keeps the
    file of a multi-frame image, or of one never decoded, open until the image is garbage)."""
    im, name = _open(src, max_pixels, **kw)
    try:
        yield im, name
    finally:
        if im is not src:
            im.close()


def _checked(im: Image.Image, name: str, max_pixels: int, decode: bool) -> tuple[Image.Image, str]:
    w, h = im.size
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of {max_pixels / 1e6:.1f}; "
            "downscale it first (or raise IC_ZOO_MAX_PIXELS if you trust the file).")
    if w == 0 or h == 0:
        raise BadImageError(f"{name} has no pixels.")
    try:
        im.seek(0)  # first frame of GIF / multi-page TIFF
    except (EOFError, AttributeError, ValueError):
        pass
    if not decode:
        return im, name
    return _decoded(im, name), name


def _high_bit_depth_to_uint8(im: Image.Image) -> Image.Image:
    """16-bit and float images: scale their range to 0-255 instead of clipping."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16") or arr.dtype == np.uint16:
        arr8 = (arr.astype(np.float32) / 257.0).round()
    else:  # "I" (int32) or "F" (float): stretch what is there
        arr = arr.astype(np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if hi <= 1.0 and lo >= 0.0 and im.mode == "F":
            arr8 = arr * 255.0
        elif hi > 255 or lo < 0:
            arr8 = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        else:
            arr8 = arr
    return Image.fromarray(np.clip(np.nan_to_num(arr8), 0, 255).astype(np.uint8), "L")


def to_rgb_pil(im: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Any PIL image -> RGB, EXIF orientation applied, transparency composited onto ``background``."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF must not lose the image
        pass
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _high_bit_depth_to_uint8(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        bg = Image.new("RGBA", im.size, tuple(background) + (255,))
        return Image.alpha_composite(bg, im).convert("RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return im


def load_image(src: ImageLike, *, max_pixels: int | None = None, max_side: int | None = None) -> np.ndarray:
    """Read ``src`` as RGB uint8 H x W x 3. Raises BadImageError / ImageTooLargeError with one sentence.

    ``max_side``: the caller uses at most this longer side (the app downscales to it), so no more is
    decoded or converted than that needs: a JPEG is decoded at a reduced scale (``draft``: 1/2 to 1/8),
    and any image is reduced by a whole factor (box average) before its conversion to RGB, leaving at
    least ``max_side`` for the caller's own resize. A 116 KB PNG of 40 megapixels cost the app 400 MB of
    conversions at full size (issue 36 item 4)."""
    limit = max_pixels if max_pixels is not None else max_pixels_default()
    if isinstance(src, np.ndarray):
        return as_rgb_array(src, limit)
    with opened(src, limit, decode=max_side is None) as (im, name):
        if max_side is not None:
            w, h = im.size
            if im.format == "JPEG" and max(w, h) > 2 * max_side:
                s = max_side / max(w, h)
                im.draft("RGB", (max(1, int(w * s + 0.5)), max(1, int(h * s + 0.5))))
            im = _decoded(im, name)
            k = max(im.size) // max_side
            if k >= 2 and im.mode in ("L", "RGB", "CMYK", "YCbCr"):  # modes whose averages mean something
                im = im.reduce(k)
        return np.ascontiguousarray(np.asarray(to_rgb_pil(im), dtype=np.uint8))


def _decoded(im: Image.Image, name: str) -> Image.Image:
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"{name} is damaged or truncated and cannot be decoded ({exc}).") from None
    return im


def as_rgb_array(arr: np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    """Validate/convert an in-memory array (H x W, H x W x 1/3/4, any numeric dtype) to RGB uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise BadImageError(f"an image array must be H x W or H x W x 3/4, not {arr.shape}.")
    h, w = arr.shape[:2]
    limit = max_pixels if max_pixels is not None else max_pixels_default()
    if h * w > limit:
        raise ImageTooLargeError(f"the image is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of "
                                 f"{limit / 1e6:.1f}; downscale it first.")
    if h == 0 or w == 0:
        raise BadImageError("the image has no pixels.")
    if arr.dtype != np.uint8:
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        elif np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0:
            arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        elif arr.dtype == np.uint16:
            arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
        else:
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 4:
        a = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3].astype(np.float32) * a + 255.0 * (1 - a) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def mask_from_array(arr: np.ndarray) -> np.ndarray:
    """Bool mask from an array: alpha where it carries information, else brightness > half."""
    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        return arr if arr.ndim == 2 else arr.any(axis=2)
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[..., 3]
        if alpha.min() != alpha.max():  # a painted layer: opaque = painted
            return alpha > 0
        arr = arr[..., :3]
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if np.issubdtype(arr.dtype, np.floating):
        return arr > 0.5
    top = 1 if arr.max() <= 1 else (65535 if arr.dtype == np.uint16 else 255)
    return arr > top / 2


def load_mask(src: ImageLike, shape: tuple[int, int] | None = None, *, max_pixels: int | None = None,
              max_side: int | None = None) -> np.ndarray:
    """Read a mask (white / opaque = remove). With ``shape`` (H, W) a mask of another size is resized
    (nearest neighbour) with a warning, as a mask drawn on a preview often is. ``max_side``: the caller
    resizes it to at most this longer side anyway, so a larger file is sampled down (nearest neighbour, as
    that resize) before any array is made of it (a 40 megapixel mask cost the app hundreds of MB)."""
    limit = max_pixels if max_pixels is not None else max_pixels_default()
    if isinstance(src, np.ndarray):
        mask = mask_from_array(src)
    else:
        try:
            with opened(src, limit) as (im, _):  # the file it opened is closed at the end
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:
                    pass
                if im.mode in ("P", "LA", "PA"):
                    im = im.convert("RGBA")
                elif im.mode not in ("RGBA", "RGB", "L", "1", "I;16", "I", "F"):
                    im = im.convert("RGB")
                k = max(im.size) // max_side if max_side else 1
                if k >= 2:
                    im = im.resize((max(1, im.size[0] // k), max(1, im.size[1] // k)), Image.NEAREST)
                mask = mask_from_array(np.asarray(im))
        except BadImageError as exc:  # raised only by the open and decode
            raise MaskError(str(exc).replace("an image", "a mask image")) from None
    if mask.ndim != 2:
        raise MaskError(f"a mask must be two-dimensional, not {mask.shape}.")
    if shape is not None and mask.shape != tuple(shape[:2]):
        warnings.warn(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {shape[1]}x{shape[0]}; "
                      "resizing the mask to fit", stacklevel=2)
        mask = resize_mask(mask, shape[:2])
    return mask


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(im.resize((shape[1], shape[0]), Image.NEAREST)) > 127


def save_png(arr: np.ndarray, path: str | os.PathLike) -> None:
    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    Image.fromarray(arr).save(path, format="PNG")


def mask_to_png(mask: np.ndarray) -> bytes:
    """A mask as a 1-bit PNG (a stroke: a few hundred bytes)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, bool)).save(buf, format="PNG", optimize=True)  # 1-bit PNG
    return buf.getvalue()


def png_to_mask(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L")) > 0


def image_to_png(img: np.ndarray) -> bytes:
    """An RGB image as PNG bytes (the study log's images, the app's stored originals)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def png_to_image(data: bytes) -> np.ndarray:
    """PNG bytes as an RGB image."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
