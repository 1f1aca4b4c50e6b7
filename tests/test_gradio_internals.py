"""Issue 37 item 3: every Gradio internal the apps use is reached through ic_zoo.app.gradio_internals, and
each one is checked here against the installed Gradio, so an upgrade that changes one fails by name."""
from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import gradio as gr
import pytest

from ic_zoo.app import gradio_internals as gi
from ic_zoo.errors import IcZooError

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_gradio_is_in_the_tested_range_and_others_get_one_sentence():
    assert gi.check_version() == gr.__version__
    for outside in ("6.30.2", "7.0.0", "5.49.1"):
        with pytest.raises(IcZooError, match=rf"^This app is tested with Gradio 6\.31 up to \(not including\) 7\.0, "
                                             rf"and Gradio {re.escape(outside)} is installed: .*requirements\.txt`\.$"):
            gi.check_version(outside)
    assert gi.check_version("6.40.1") == "6.40.1"


def test_no_other_module_touches_a_gradio_internal():
    """The internals named in gradio_internals appear nowhere else in the package or the app."""
    names = (r"\b_queue\b", r"\bevent_queue_per_concurrency_id\b", r"\bcreate_or_modify_pyi\b", r"\bLocalContext\b",
             r"\bblob_storage\b", r"\._id\b")
    offenders = []
    for path in list((ROOT / "ic_zoo").rglob("*.py")) + [ROOT / "app.py"]:
        if path.name == "gradio_internals.py":
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if re.search(n, text)]
    assert not offenders, offenders


def test_the_component_id_and_the_running_blocks():
    with gr.Blocks() as demo:
        box = gr.Textbox()
    assert isinstance(gi.block_id(box), int) and demo.blocks[gi.block_id(box)] is box
    with pytest.raises(LookupError):  # outside an event there is no running session: LocalContext's own error
        gi.current_blocks()


def test_the_stub_writer_is_switched_off_and_back():
    from gradio import component_meta

    before = component_meta.create_or_modify_pyi
    with gi.no_component_stub():
        assert component_meta.create_or_modify_pyi is not before
    assert component_meta.create_or_modify_pyi is before


def test_the_editor_keeps_its_pending_uploads_where_we_look():
    from gradio.components.image_editor import AcceptBlobs

    editor = gr.ImageEditor()
    assert gi.pending_uploads(editor) == {}
    editor.accept_blobs(AcceptBlobs(data={"type": "background", "index": None, "id": "e1", "file": b""},
                                    files=[("blob", b"x")]))
    assert list(gi.pending_uploads(editor)) == ["e1"]


def test_the_queue_push_can_be_wrapped_and_counted():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with gr.Blocks() as demo:
        gr.Button().click(lambda: None)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        seen = []

        def wrap(push):
            async def pushed(body, request, username):
                seen.append(body)
                return False, "refused here", "error"
            return pushed

        gi.wrap_queue_push(demo, wrap)
        assert gi.in_flight(demo) == 0
        assert asyncio.run(demo._queue.push("b", None, None)) == (False, "refused here", "error")  # noqa: SLF001
        assert seen == ["b"]
    finally:
        demo.close()
