"""A public link, tried as an attacker and as a returning user would (issue 12): every image the canvas
sends passes the library's gate with one sentence, and memory stays bounded (tab states expire or are
evicted with a sentence, the undo depth and the per-version caches are capped)."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
import app as app_module  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from ic_zoo.app import gated_canvas, tab_store  # noqa: E402
from ic_zoo.flower2d import generator as g  # noqa: E402

FLOWERS = ["flower2d/squeezenet", "flower2d/resnet"]
SETTINGS = (FLOWERS, "gradcam", app_module.ROWS[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("public")
    p = g.sample_params("double-12c", 0, "test", 7002)
    img, parts = g.render(p, 160)
    Image.fromarray(img).save(d / "flower.png")
    layer = np.zeros(img.shape[:2] + (4,), np.uint8)
    layer[g.disc_mask(p, parts)] = (255, 0, 0, 255)
    Image.fromarray(layer).save(d / "disc.png")
    Image.fromarray(layer[::2, ::2]).save(d / "disc_half.png")  # a stroke layer of the wrong size
    blank = np.zeros_like(layer)
    blank[10:20, 10:20] = (255, 0, 0, 255)
    Image.fromarray(blank).save(d / "dot.png")
    # a decompression bomb: 47 KB on disk, 7000 x 7000 declared (1.7 GB once Gradio decoded it as RGBA)
    Image.new("1", (7000, 7000)).save(d / "bomb.png", optimize=True)
    Image.new("RGB", (8000, 8000), (90, 120, 30)).save(d / "huge.jpg", quality=10)
    (d / "vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                                  '<rect width="64" height="64" fill="red"/></svg>')
    (d / "notes.png").write_text("not an image")
    (d / "cut.png").write_bytes((d / "flower.png").read_bytes()[:1500])
    # a photo taken with the camera turned: stored 120 x 160, EXIF says rotate to 160 x 120
    ex = Image.fromarray(img[:120, :160])
    exif = ex.getexif()
    exif[0x0112] = 6
    ex.save(d / "turned.jpg", exif=exif.tobytes())
    return d


@pytest.fixture(scope="module")
def server():
    demo = app_module.build_demo(models=FLOWERS)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield demo, url
    demo.close()


def _edit(c, bg, layers=()):
    return c.predict({"background": handle_file(str(bg)), "layers": [handle_file(str(x)) for x in layers],
                      "composite": None}, FLOWERS, "telea", "gradcam", app_module.ROWS[0], api_name="/edit")


def _refused(c, bg, layers=()) -> str:
    with pytest.raises(Exception) as info:
        _edit(c, bg, layers)
    msg = str(info.value)
    assert "upstream Gradio app has raised an exception" not in msg, msg
    return msg


@pytest.mark.slow
def test_every_image_the_canvas_sends_passes_the_gate(server, files):
    import resource

    _, url = server
    d = files
    c = Client(url, verbose=False)
    first = _edit(c, d / "flower.png", [d / "dot.png"])
    assert first[-1]["n_edits"] == 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "megapixels" in _refused(c, d / "bomb.png")
    assert "megapixels" in _refused(c, d / "flower.png", [d / "bomb.png"])
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024 < 200  # KB: never decoded
    assert "megapixels" in _refused(c, d / "huge.jpg")
    for bad in ("vector.svg", "notes.png"):
        assert "not an image that can be read here" in _refused(c, d / bad)
    assert "damaged or truncated" in _refused(c, d / "cut.png")
    assert "Stroke layer 2 is damaged" in _refused(c, d / "flower.png", [d / "dot.png", d / "cut.png"])
    assert "at most 8 stroke layers" in _refused(c, d / "flower.png", [d / "dot.png"] * 9)
    # nothing was lost: the session still has its stroke, and the next one stacks on it
    again = _edit(c, first[0]["background"], [d / "disc.png"])[-1]
    assert again["n_edits"] == 2
    # a stroke layer of another size is resized to fit (with a warning), not dropped
    c2 = Client(url, verbose=False)
    r = _edit(c2, d / "flower.png", [d / "disc_half.png"])[-1]
    assert r["n_edits"] == 1 and r["last_edit"]["mask_pixels"] > 0.5 * (np.asarray(
        Image.open(d / "disc.png"))[..., 3] > 0).sum()
    # EXIF orientation is applied, as load_image does
    r = _edit(Client(url, verbose=False), d / "turned.jpg")[-1]
    assert r["image_shape"][:2] == [160, 120]


def test_a_layer_index_past_the_cap_is_refused_before_any_list_grows():
    from gradio.components.image_editor import AcceptBlobs

    canvas = gated_canvas.editor("x")
    with pytest.raises(Exception, match="at most 8 stroke layers"):
        canvas.accept_blobs(AcceptBlobs(data={"type": "layer", "index": 1000000000, "id": "a", "file": b""},
                                        files=[("blob", b"x")]))
    assert canvas.blob_storage == {}
    for i in range(gated_canvas.MAX_PENDING_EDITS + 10):  # uploads whose event never comes
        canvas.accept_blobs(AcceptBlobs(data={"type": "background", "index": None, "id": f"e{i}", "file": b""},
                                        files=[("blob", b"x")]))
    assert len(canvas.blob_storage) == gated_canvas.MAX_PENDING_EDITS


@pytest.fixture
def small_server(monkeypatch):
    monkeypatch.setenv("IC_ZOO_SESSION_TTL_S", "4")
    monkeypatch.setenv("IC_ZOO_MAX_SESSIONS", "2")
    demo = app_module.build_demo(models=FLOWERS)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield demo, url
    demo.close()
    demo.ic_zoo_tabs.close()


@pytest.mark.slow
def test_tab_states_expire_and_are_evicted_with_a_sentence(small_server, files):
    demo, url = small_server
    d = files
    a, b, c = (Client(url, verbose=False) for _ in range(3))
    for cl in (a, b):
        assert _edit(cl, d / "flower.png", [d / "dot.png"])[-1]["n_edits"] == 1
    assert len(demo.ic_zoo_tabs) == 2
    _edit(c, d / "flower.png")  # a third tab: the least recently used (a) makes room
    with pytest.raises(Exception, match="Your session expired .*at most 2 sessions"):
        a.predict(*SETTINGS, api_name="/undo")
    assert _refused(a, d / "flower.png", [d / "dot.png"]).startswith("Your session expired")  # the old canvas
    # b was used more recently than a and keeps its stroke
    assert b.predict(*SETTINGS, api_name="/undo")[-1]["n_edits"] == 0
    # a new image starts a new session for a
    assert _edit(a, d / "flower.png", [d / "dot.png"])[-1]["n_edits"] == 1
    time.sleep(4.5)
    released = demo.ic_zoo_tabs.sweep()
    assert released  # idle past the time to live
    with pytest.raises(Exception, match="idle for more than 4 seconds"):
        b.predict(*SETTINGS, api_name="/redo")


def test_tabs_never_release_a_state_in_use():
    class S:
        def __init__(self):
            self.why = None

        def release(self, why):
            self.why = why

    tabs = tab_store.Tabs(S, ttl_s=0.01, max_tabs=1, sweep_s=3600)
    busy, other = S(), S()
    seen = {}

    def handler(st):
        time.sleep(0.05)
        seen["released_during"] = tabs.sweep()
        return st

    tabs.hold(lambda st: st)(other)
    tabs.hold(handler)(busy)
    assert busy not in seen["released_during"] and other.why is not None and busy.why is None
    tabs.close()
    # a state a handler returns among its {component: value} outputs counts as used now, like a returned one
    tabs = tab_store.Tabs(S, ttl_s=3600, max_tabs=1, sweep_s=3600)
    first, fresh = S(), S()
    tabs.hold(lambda st: st)(first)
    tabs.hold(lambda: {"state": fresh, "status": "ok"})()
    assert len(tabs) == 1 and fresh.why is None and "least recently used" in first.why
    tabs.close()


def test_tabs_are_bounded_by_the_bytes_they_hold():
    """Issue 36, item 1: the bound is on bytes, not only on a count of tabs: the least recently used tab
    goes once the tabs together hold more than max_bytes (never the one just used, however large)."""
    class S:
        def __init__(self, mb):
            self.why, self.pixels = None, np.zeros(int(mb * 1e6), np.uint8)

        def release(self, why):
            self.why, self.pixels = why, None

    tabs = tab_store.Tabs(S, ttl_s=3600, max_tabs=64, sweep_s=3600, max_bytes=10_000_000)
    a, b, c = S(4), S(4), S(1)
    for st in (a, b, c):
        tabs.hold(lambda st: st)(st)
    assert tabs.held_bytes() == 9_000_000 and not any(st.why for st in (a, b, c))
    tabs.hold(lambda st: st)(a)  # a is now the most recently used: b is the oldest
    big = S(12)  # alone over the bound: everything older goes, but not the tab just used
    tabs.hold(lambda st: st)(big)
    assert big.why is None and all("at most 10 MB" in st.why for st in (a, b, c)), (a.why, b.why, c.why)
    assert tabs.held_bytes() == 12_000_000
    d = S(1)
    tabs.hold(lambda st: st)(d)
    assert "least recently used" in big.why and d.why is None and tabs.held_bytes() == 1_000_000
    tabs.close()


def test_a_tab_is_measured_by_what_it_owns(photo):
    """memsize.nbytes counts a session's images, patches, masks, inputs, runs and maps once each, and not
    the model weights an explainer run's graph saved (every tab shares those)."""
    import ic_zoo
    from ic_zoo.memsize import nbytes

    s = ic_zoo.Session(photo, pretrained=False)
    assert nbytes(s) == s.original.nbytes
    m = np.zeros(photo.shape[:2], bool)
    m[10:30, 10:40] = True
    s.apply(m, "telea")
    e = s.edits[-1]
    stroke = s.original.nbytes + e.image.nbytes + e._packed.nbytes + e.patch[0].nbytes + e.patch[1].nbytes
    assert nbytes(s) == stroke
    s.evaluate(["flower2d/squeezenet"], explainer="gradcam")
    clf = s.classifier("flower2d/squeezenet")
    weights = list(clf.model.parameters()) + list(clf.model.buffers())
    held = nbytes(s)
    st = s.cache[("flower2d/squeezenet", s.version)]
    assert st.run is not None and held > stroke + st.x.numel() * 4 + sum(m.nbytes for m in st.maps[next(iter(st.maps))])
    assert nbytes([s, weights]) == held + sum(w.numel() * w.element_size() for w in weights)  # none counted in held
    assert nbytes([s, s, s.original]) == held  # each buffer once


def test_the_session_keeps_a_bounded_undo_depth_and_cache(photo):
    import ic_zoo
    from ic_zoo import session as S
    from ic_zoo.analyses.history import history

    s = ic_zoo.Session(photo[:96, :96], pretrained=False)
    m = np.zeros((96, 96), bool)
    made = []
    for i in range(S.MAX_UNDO + 6):
        m[:] = False
        m[i % 90:(i % 90) + 4, 10:20] = True
        s.apply(m.copy(), "telea")
        made.append(s.modified)
        s.evaluate(["flower2d/squeezenet"], explainer="gradcam")
    assert len(s.edits) == S.MAX_UNDO + 6
    undoable = [e for e in s.edits if not e.retired]
    assert len(undoable) == S.MAX_UNDO + 1
    images = [e for e in s.edits if e.image is not None]
    assert len(images) == 3  # the current image, the one before, the base of the undo depth; the rest are patches
    assert all(e.patch[0].size <= 40 for e in undoable[1:])  # a patch is the stroke's pixels, not an image
    assert s.edits[0].mask.sum() == 40  # an old stroke keeps its mask (bit-packed)
    heavy = [k for k, st in s.cache.items() if st.x is not None]
    assert len(heavy) <= 2, heavy  # the original and the current image
    mapped = [k[1] for k, st in s.cache.items() if st.maps]
    assert sorted(mapped) == sorted({0, s.version, s.edits[-2].uid}), mapped  # and the one before: maps only
    rebuilt = []
    for _ in range(S.MAX_UNDO):
        rebuilt.append(s.modified)
        assert s.undo()
    assert not s.can_undo and not s.undo()  # past the undo depth
    # every image undo showed is the one the stroke made, rebuilt exactly from the patches; so is redo's
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt, made[::-1])) and len(rebuilt) == S.MAX_UNDO
    assert np.array_equal(s.modified, made[-S.MAX_UNDO - 1])
    for i in range(S.MAX_UNDO):
        assert s.redo() and np.array_equal(s.modified, made[-S.MAX_UNDO + i])
    assert len([e for e in s.edits if e.image is not None]) == 3
    h = history(s, "flower2d/squeezenet")  # predictions of every stroke were kept
    assert len(h.steps) == len(s.edits) + 1 and h.skipped == 0
    s.reset()
    assert s.version == 0 and not s.edits


@pytest.mark.slow
def test_library_errors_and_warnings_have_fitting_names(tmp_path, photo):
    """Issue 12, item 9: a class out of range is a ClassIndexError (not a MaskError); a tiny or NaN image
    is classified with an IcZooWarning; the CLI prints warnings to stderr and refuses a file as --out."""
    import subprocess
    import sys

    import ic_zoo
    from ic_zoo.errors import ClassIndexError, IcZooWarning, MaskError

    s = ic_zoo.Session(photo[:64, :64], pretrained=False)
    with pytest.raises(ClassIndexError, match="outside 0..11") as info:
        s.explain("flower2d/squeezenet", 999)
    assert not isinstance(info.value, MaskError)
    with pytest.warns(IcZooWarning, match="only 1x1 pixels"):
        tiny = ic_zoo.Session(np.full((1, 1, 3), 90, np.uint8), pretrained=False)
    assert tiny.warnings
    nan = np.full((32, 32, 3), 0.5, np.float32)
    nan[:4] = np.nan
    with pytest.warns(IcZooWarning, match="128 of the image's 1024 pixels are NaN"):
        ic_zoo.Session(nan, pretrained=False)
    Image.fromarray(photo[:64, :64]).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "empty.png")
    (tmp_path / "afile").write_text("x")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "ic_zoo", "edit", str(tmp_path / "img.png"), "--mask",
                               str(tmp_path / "empty.png"), "-m", "flower2d/squeezenet", "--no-pretrained", *args],
                              capture_output=True, text=True, timeout=300)

    r = cli("--out", str(tmp_path / "o1"), "--class", "999")
    assert r.returncode == 0
    assert "warning: the mask" in r.stderr and "is empty" in r.stderr
    assert "warning: flower2d/squeezenet: Class index 999 is outside" in r.stderr
    r = cli("--out", str(tmp_path / "afile"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "is a file" in r.stderr


@pytest.mark.slow
def test_soak_small_form():
    """The soak benchmark in small form (the full run is by hand: benchmarks/soak.py): 4 API clients x 10
    edits x 2 rounds against a started app, no errors, no crossed results, bounded memory."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import soak

    d = soak.run(clients=4, edits=10, rounds=2, settle=2.0)
    assert d["errors"] == 0 and d["crossed"] == 0, d["rounds_detail"]
    assert all(r["edits"] == 40 for r in d["rounds_detail"])
    assert d["growth_after_first_round_mb"] < 150, d["rounds_detail"]


def test_a_canvas_file_this_server_does_not_have_is_the_reload_sentence(tmp_path):
    """A stroke whose files were uploaded to another replica (the proxy sent the upload to one that was
    stopping, the event to another) finds no file here: the reload sentence, not "does not exist"."""
    from gradio.data_classes import FileData

    canvas = gated_canvas.editor("x")
    for what in ("the image", "stroke layer 1"):
        with pytest.raises(Exception) as info:
            canvas._gate(FileData(path=str(tmp_path / "uploaded_elsewhere.png")), what)
        assert str(info.value).strip("'") == gated_canvas.UPLOAD_GONE


def _upload(front, host, size, xff=None, chunked=False):
    """One POST to Gradio's upload route through serve.HealthFront; returns (status, body, bytes the app read)."""
    import asyncio

    sent, read = [], [0]
    body = b"x" * size
    headers = [] if chunked else [(b"content-length", str(size).encode())]
    if xff:
        headers.append((b"x-forwarded-for", xff.encode()))
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload", "client": (host, 5555),
             "headers": headers}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(m):
        sent.append(m)

    async def app(scope, receive, send):  # reads the whole body, as Gradio's upload route does
        m = await receive()
        read[0] += len(m["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[]"})

    asyncio.run(front.__class__(app, front.health, front.uploads)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), read[0]


def test_uploads_are_bounded_per_client(monkeypatch):
    """Issue 36, item 8: a client may upload at most IC_ZOO_UPLOAD_MB_PER_CLIENT in any 10 minutes (a 429
    with one sentence, before the body is read); other clients are not affected; behind a proxy whose
    forwarded address is not trusted the clients cannot be told apart and only the size limit holds."""
    from ic_zoo.app import serve

    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.setenv(serve.UPLOAD_MB_ENV, "0.001")  # 1000 bytes
    front = serve.HealthFront(None, serve.Health())
    assert front.uploads.limit == 1000
    assert _upload(front, "203.0.113.5", 600)[0] == 200
    status, body, read = _upload(front, "203.0.113.5", 600)
    assert status == 429 and read == 0 and body.decode().count(".") == 1 and "uploaded more than" in body.decode()
    assert _upload(front, "203.0.113.6", 600)[0] == 200  # another client
    assert _upload(front, "203.0.113.6", 300, chunked=True)[0] == 200  # no length: counted as it is read
    assert _upload(front, "203.0.113.6", 200)[0] == 429
    for _ in range(3):  # an untrusted same-host proxy: every client has its address
        assert _upload(front, "127.0.0.1", 600, xff="198.51.100.1")[0] == 200
    monkeypatch.setenv(serve.UPLOAD_MB_ENV, "lots")
    with pytest.raises(Exception, match="IC_ZOO_UPLOAD_MB_PER_CLIENT must be a number of megabytes"):
        serve.UploadBudget.from_env()


@pytest.mark.slow
def test_a_file_larger_than_the_apps_read_is_refused(tmp_path):
    """Issue 36, item 8: `python app.py` takes files up to serve.MAX_FILE_SIZE (20 MB), not 50 MB; a file
    within it is taken."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from ic_zoo.app import serve

    assert serve.MAX_FILE_SIZE == "20mb"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "-m", "flower2d/squeezenet"],
                            cwd=str(Path(__file__).resolve().parents[1]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(900):
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        small = httpx.post(url + "/gradio_api/upload", files={"files": ("a.png", b"\x89PNG" + b"0" * 1000)}, timeout=60)
        assert small.status_code == 200, small.text
        big = httpx.post(url + "/gradio_api/upload", files={"files": ("b.png", b"\x89PNG" + os.urandom(21_000_000))},
                         timeout=120)
        assert big.status_code == 413, (big.status_code, big.text[:200])
    finally:
        proc.terminate()
        proc.wait(30)
