"""Inputs: every common format and mode is read as RGB uint8; bad files get one sentence."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from ic_zoo.errors import BadImageError, ImageTooLargeError, MaskError
from ic_zoo.imageio import load_image, load_mask


@pytest.fixture()
def rgb():
    y, x = np.mgrid[0:40, 0:60]
    return np.stack([x * 4, y * 6, (x + y) * 2], -1).astype(np.uint8)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("TIFF", "tif"),
                                     ("GIF", "gif"), ("BMP", "bmp")])
def test_formats(tmp_path, rgb, fmt, ext):
    p = tmp_path / f"img.{ext}"
    Image.fromarray(rgb).save(p, format=fmt)
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    if fmt in ("PNG", "TIFF", "BMP"):
        assert np.array_equal(out, rgb)
    else:
        assert np.abs(out.astype(int) - rgb).mean() < 25


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 10), c) for c in [(255, 0, 0), (0, 0, 255)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    out = load_image(p)
    assert out[5, 5, 0] > 200 and out[5, 5, 2] < 50


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "1", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_modes(tmp_path, rgb, mode):
    im = Image.fromarray(rgb)
    if mode == "I;16":
        im = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257), mode="I;16")
    elif mode == "F":
        im = Image.fromarray(rgb[..., 0].astype(np.float32) / 255.0, mode="F")
    else:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="TIFF" if mode in ("I;16", "I", "F", "CMYK", "LA") else "PNG") if mode != "YCbCr" \
        else im.convert("RGB").save(buf, format="JPEG")
    out = load_image(buf.getvalue())
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    if mode in ("I;16", "F", "L"):
        # 16-bit and float are scaled to 0..255, not clipped to white
        assert abs(int(out[20, 30, 0]) - int(rgb[20, 30, 0])) <= 2 or mode == "L"
        assert out.max() < 255 or rgb[..., 0].max() == 255


def test_transparency_composited_on_white(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    a[..., 0] = 255
    a[:5, :, 3] = 255  # top half opaque red, bottom transparent
    out = load_image(Image.fromarray(a, "RGBA"))
    assert tuple(out[2, 2]) == (255, 0, 0) and tuple(out[8, 8]) == (255, 255, 255)


def test_exif_orientation_applied(tmp_path, rgb):
    im = Image.fromarray(rgb)  # 60 wide x 40 high
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif.tobytes())
    out = load_image(p)
    assert out.shape == (60, 40, 3)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture")
    with pytest.raises(BadImageError, match="not an image") as info:
        load_image(p)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")


def test_truncated(tmp_path, rgb):
    p = tmp_path / "cut.jpg"
    big = np.tile(rgb, (8, 8, 1))
    Image.fromarray(big).save(p, quality=95)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="truncated|damaged"):
        load_image(p)


def test_pixel_limit(tmp_path, rgb, monkeypatch):
    p = tmp_path / "big.png"
    Image.fromarray(rgb).save(p)
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        load_image(p, max_pixels=1000)
    monkeypatch.setenv("IC_ZOO_MAX_PIXELS", "2000")
    with pytest.raises(ImageTooLargeError):
        load_image(p)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    # a 20000 x 20000 PNG header with almost no data: refused from its size alone
    p = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(p, optimize=True)
    assert p.stat().st_size < 200_000
    with pytest.raises(ImageTooLargeError):
        load_image(p)


def test_masks(tmp_path):
    m = np.zeros((40, 60), np.uint8)
    m[10:20, 5:25] = 255
    p = tmp_path / "m.png"
    Image.fromarray(m).save(p)
    assert load_mask(p).sum() == 200
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[10:20, 5:25] = (255, 0, 0, 255)
    q = tmp_path / "layer.png"
    Image.fromarray(rgba, "RGBA").save(q)
    assert load_mask(q).sum() == 200  # painted layer: alpha is the mask
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        big = load_mask(p, (80, 120))
    assert big.shape == (80, 120) and big.sum() == 800
    assert any("resizing the mask" in str(x.message) for x in w)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(MaskError, match="mask image"):
        load_mask(bad)


def test_the_app_decodes_no_more_than_it_uses(tmp_path):
    """Issue 36 item 4: a small PNG of 36 megapixels was converted at full size (hundreds of MB) for an
    app that keeps 768 px. With max_side, what numpy holds at once stays near the kept size (tracemalloc
    sees numpy's buffers), the result is at least max_side, and the image is the same picture."""
    import tracemalloc

    from PIL import Image

    from ic_zoo.imageio import load_image

    big = Image.new("RGB", (6000, 6000), (40, 120, 200))
    big.paste((250, 250, 0), (3000, 0, 6000, 6000))  # the right half yellow
    big.save(tmp_path / "big.png")
    big.save(tmp_path / "big.jpg", quality=90)
    del big
    for name in ("big.png", "big.jpg"):
        tracemalloc.start()
        small = load_image(tmp_path / name, max_side=768)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert min(small.shape[:2]) >= 768 and max(small.shape[:2]) < 2 * 768, small.shape
        assert peak < 20e6, (name, peak)  # a 6000 x 6000 RGB array alone is 108 MB
        h, w = small.shape[:2]
        assert np.abs(small[h // 2, w // 4].astype(int) - (40, 120, 200)).max() <= 6, small[h // 2, w // 4]
        assert np.abs(small[h // 2, 3 * w // 4].astype(int) - (250, 250, 0)).max() <= 6
    tracemalloc.start()
    load_image(tmp_path / "big.png")  # without it, the full size, as before
    assert tracemalloc.get_traced_memory()[1] > 100e6
    tracemalloc.stop()


def test_a_huge_mask_is_sampled_down_before_any_array_is_made(tmp_path):
    """Issue 36 item 4, the mask half: /apply_mask read a 40 MP mask into full-size arrays for an image of
    at most 768 px. With max_side the mask is sampled (nearest, as the final resize) first."""
    import tracemalloc

    from PIL import Image

    from ic_zoo.imageio import load_mask, resize_mask

    m = Image.new("L", (6000, 4000), 0)
    m.paste(255, (0, 0, 3000, 2000))  # the top-left quarter removed
    m.save(tmp_path / "mask.png")
    tracemalloc.start()
    small = load_mask(tmp_path / "mask.png", max_side=600)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10e6 and max(small.shape) >= 600, (peak, small.shape)  # 24 MB for the full-size mask alone
    full = load_mask(tmp_path / "mask.png")
    assert np.array_equal(resize_mask(small, (400, 600)), resize_mask(full, (400, 600)))  # the same mask


def test_no_file_is_left_open(tmp_path):
    """Issue 36, item 9: an image refused after it was opened (over the pixel limit), a multi-frame one and
    a mask leave no file open (a ResourceWarning when the image is garbage, one per refused upload)."""
    import gc
    import warnings

    from PIL import Image

    from ic_zoo.errors import ImageTooLargeError, MaskError
    from ic_zoo.imageio import load_image, load_mask

    big = tmp_path / "big.png"
    Image.new("L", (1200, 1000)).save(big)
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    gc.collect()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(ImageTooLargeError):
            load_image(big, max_pixels=1_000_000)
        with pytest.raises(ImageTooLargeError):
            load_mask(big, max_pixels=1_000_000)
        with pytest.raises(MaskError):
            load_mask(tmp_path / "missing.png")
        assert load_image(gif).shape == (30, 40, 3)
        assert load_mask(gif).shape == (30, 40)
        assert load_image(big, max_side=300).shape[1] >= 300
        gc.collect()
    assert [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)] == []
