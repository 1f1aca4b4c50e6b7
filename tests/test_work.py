"""A tab's work survives its replica (issue 33, item 4): the browser's signed work record and the image
store, checked against the session they describe (the rebuilt image bitwise equal to the one shown)."""
from __future__ import annotations

import numpy as np
import pytest

import ic_zoo
from ic_zoo.app import work as W

SECRET = "s" * 64
FLOWERS = ["flower2d/squeezenet", "flower2d/resnet"]


def _image(seed=0, shape=(96, 128, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _mask(shape, x0, y0, w, h):
    m = np.zeros(shape, bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def _session(img):
    return ic_zoo.Session(img, pretrained=False)


def _worked(img):
    s = _session(img)
    s.apply(_mask(img.shape[:2], 10, 10, 30, 20), "telea")
    s.apply(_mask(img.shape[:2], 60, 40, 25, 25), "ns")
    s.apply(_mask(img.shape[:2], 5, 60, 20, 20), "blur", sigma=3.0)
    s.apply(_mask(img.shape[:2], 90, 5, 20, 20), "telea")
    s.undo()  # the record keeps what is applied, not the redo step
    return s


@pytest.fixture(params=["folder", "sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "folder":
        return W.FolderImageStore(tmp_path / "images")
    if request.param == "sqlite":
        return W.SqlImageStore(f"sqlite:///{tmp_path / 'images.sqlite'}")
    return W.SqlImageStore(request.getfixturevalue("pg_url"))


def test_a_record_rebuilds_the_image_the_person_saw(store):
    img = _image()
    s = _worked(img)
    key = store.put(s.original)
    assert store.put(s.original) == key == W.image_hash(img)  # stored once, by its pixels
    rec = W.encode(W.Work.of(key, s, "my photo", FLOWERS, {"flower2d/resnet": 3}), SECRET)
    w = W.decode(rec, SECRET)
    assert (w.image, w.source, w.models, w.selected) == (key, "my photo", FLOWERS, {"flower2d/resnet": 3})
    assert [inp for _, inp, _ in w.strokes] == ["telea", "ns", "blur"] and w.strokes[2][2] == {"sigma": 3.0}
    again = W.rebuild(w, store, _session)
    assert np.array_equal(again.original, s.original)
    assert np.array_equal(again.modified, s.modified)  # the inpainters are deterministic: the same pixels
    assert len(again.edits) == 3
    assert len(rec) < 20_000  # the strokes as 1-bit PNGs: small enough for the browser to keep


def test_a_second_store_on_the_same_database_finds_the_image(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    img = _image(1)
    key = W.SqlImageStore(url).put(img)
    assert np.array_equal(W.SqlImageStore(url).get(key), img)  # another replica, the same database
    assert W.SqlImageStore(url).get("0" * 64) is None


@pytest.mark.parametrize("tamper", ["flip_body", "other_secret", "no_signature", "not_text", "huge"])
def test_a_record_not_written_by_this_app_is_refused_in_one_sentence(tamper):
    s = _worked(_image())
    rec = W.encode(W.Work.of("a" * 64, s, "x", FLOWERS, {}), SECRET)
    body, _, sig = rec.rpartition(".")
    bad = {"flip_body": body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + sig,
           "other_secret": rec, "no_signature": body, "not_text": 42, "huge": "x" * (W.MAX_RECORD + 1)}[tamper]
    with pytest.raises(W.WorkError) as e:
        W.decode(bad, "t" * 64 if tamper == "other_secret" else SECRET)
    assert str(e.value).endswith(".") and "\n" not in str(e.value)


def test_a_forgotten_or_damaged_image_is_said_not_guessed(tmp_path):
    store = W.FolderImageStore(tmp_path)
    img = _image(2)
    key = store.put(img)
    w = W.Work(key, "x", [], FLOWERS, {})
    (tmp_path / f"{key}.png").write_bytes(W.image_to_png(_image(3)))  # the file no longer holds that image
    with pytest.raises(W.WorkError, match="no longer kept"):
        W.rebuild(w, store, _session)
    assert store.get("../../etc/passwd") is None  # only hashes name files
    big = W.Work(store.put(img), "x", [(np.ones((5, 5), bool), "telea", {})], FLOWERS, {})
    with pytest.raises(W.WorkError, match="does not fit"):
        W.rebuild(big, store, _session)


def test_the_store_named_in_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IC_ZOO_IMAGE_STORE", f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert isinstance(W.ImageStore.from_env(tmp_path / "x"), W.SqlImageStore)
    monkeypatch.setenv("IC_ZOO_IMAGE_STORE", str(tmp_path / "shared"))
    st = W.ImageStore.from_env(tmp_path / "x")
    assert isinstance(st, W.FolderImageStore) and st.folder == tmp_path / "shared"
    monkeypatch.delenv("IC_ZOO_IMAGE_STORE")
    assert W.ImageStore.from_env(tmp_path / "x").folder == tmp_path / "x"


def test_a_second_image_in_the_same_tab_gets_a_record_of_its_own(tmp_path, monkeypatch):
    """The record a tab writes always names the image it shows: loading another image starts a new one
    (through the app's API, which returns the record beside the page's other outputs)."""
    import os

    from gradio_client import Client, handle_file

    os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
    import app as app_module
    from ic_zoo.app.gated_canvas import fit_max_side

    monkeypatch.setenv("IC_ZOO_BROWSER_SECRET", SECRET)
    monkeypatch.setenv("IC_ZOO_IMAGE_STORE", str(tmp_path / "images"))
    demo = app_module.build_demo(models=FLOWERS, pretrained=False)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        c = Client(url, verbose=False)
        images = sorted((app_module.EXAMPLES / "flower2d" / "images").glob("*.png"))[:2]
        for path in images:
            out = c.predict(handle_file(str(path)), FLOWERS, "gradcam", app_module.ROWS[0], api_name="/load")
            records = [o for o in out if isinstance(o, str) and o.count(".") == 1 and len(o) > 100]
            assert len(records) == 1, out
            want = W.image_hash(fit_max_side(ic_zoo.load_image(path), app_module.MAX_SIDE))
            assert W.decode(records[0], SECRET).image == want, path
    finally:
        demo.close()
        demo.ic_zoo_tabs.close()


def test_a_strokes_mask_is_encoded_once_and_the_record_is_the_same():
    """The record is written after every change: each edit's mask PNG is kept by its uid, and the record
    made with the kept encodings is the one made from scratch."""
    img = _image(3)
    s = _worked(img)
    w = W.Work.of("a" * 64, s, "x.png", FLOWERS, {})
    first = W.encode(w, SECRET)
    assert all(u in W._ENCODED for u in w.uids)
    again = W.encode(W.Work.of("a" * 64, s, "x.png", FLOWERS, {}), SECRET)
    scratch = W.encode(W.Work(w.image, w.source, w.strokes, w.models, w.selected), SECRET)  # no uids: encoded anew
    assert first == again == scratch


def test_an_api_client_restores_its_work_on_another_replica(tmp_path, monkeypatch):
    """/restore: an API client sends the record an earlier answer gave to another replica (the same secret
    and image store): the work is rebuilt there, its image the one the first replica showed, bit for bit;
    a tampered or missing record is one sentence and the tab keeps its work."""
    import os

    from gradio_client import Client, handle_file
    from PIL import Image

    os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
    import app as app_module

    monkeypatch.setenv("IC_ZOO_BROWSER_SECRET", SECRET)
    monkeypatch.setenv("IC_ZOO_IMAGE_STORE", str(tmp_path / "images"))
    demos = [app_module.build_demo(models=FLOWERS, pretrained=False) for _ in range(2)]
    urls = [d.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)[1] for d in demos]
    try:
        img = sorted((app_module.EXAMPLES / "flower2d" / "images").glob("*.png"))[0]
        layer = np.zeros(np.asarray(Image.open(img)).shape[:2] + (4,), np.uint8)
        layer[30:70, 40:90] = (255, 0, 0, 255)
        Image.fromarray(layer).save(tmp_path / "layer.png")
        a = Client(urls[0], verbose=False)
        out = a.predict({"background": handle_file(str(img)), "layers": [handle_file(str(tmp_path / "layer.png"))],
                         "composite": None}, FLOWERS, "telea", "gradcam", app_module.ROWS[0], api_name="/edit")
        record = next(o for o in out if isinstance(o, str) and o.count(".") == 1 and len(o) > 100)
        seen = np.asarray(Image.open(out[0]["background"]).convert("RGB"))
        b = Client(urls[1], verbose=False)
        back = b.predict(record, FLOWERS, "gradcam", app_module.ROWS[0], api_name="/restore")
        assert np.array_equal(np.asarray(Image.open(back[0]["background"]).convert("RGB")), seen)
        assert any("restored (1 edit(s))" in str(o) for o in back)
        body, _, sig = record.rpartition(".")
        for bad, said in ((f"{body}.{'0' * len(sig)}", "not written by this app"), ("", "Send the work record")):
            with pytest.raises(Exception, match=said):
                b.predict(bad, FLOWERS, "gradcam", app_module.ROWS[0], api_name="/restore")
        # the tab kept its work: its undo shows the image as a fresh load of it shows it (the canvas frames it)
        undone = b.predict(FLOWERS, "gradcam", app_module.ROWS[0], api_name="/undo")
        fresh = Client(urls[1], verbose=False).predict(handle_file(str(img)), FLOWERS, "gradcam", app_module.ROWS[0],
                                                       api_name="/load")
        assert np.array_equal(np.asarray(Image.open(undone[0]["background"]).convert("RGB")),
                              np.asarray(Image.open(fresh[0]["background"]).convert("RGB")))
    finally:
        for d in demos:
            d.close()
            d.ic_zoo_tabs.close()
