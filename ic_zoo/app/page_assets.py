"""The page's styles and keys (``static/page.css``, ``static/page.js``), installed by ``page_script()`` from
a load event (Gradio 6 takes ``css`` and ``js`` only at launch, and tests and Spaces launch the demo
themselves)."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from .gated_canvas import BRUSH_SIZE

STATIC = Path(__file__).with_name("static")
PAGE_CSS = (STATIC / "page.css").read_text()
#: the page script; ``__CSS__`` and ``__BRUSH__`` are filled in by ``page_script``
PAGE_JS = (STATIC / "page.js").read_text()


#: The page's styles and keys, installed by ``page_script()`` from a load event (Gradio 6 takes ``css``
#: and ``js`` only at launch, and tests and Spaces launch the demo themselves).


#: Study pages: participants see no navigation (Gradio 6.31 still draws "Home" with gr.Navbar(visible=False)).
NO_NAVIGATION_CSS = ".nav-holder { display: none !important; }"


def page_script(demo: gr.Blocks, extra_css: str = "") -> None:
    """Install the page's styles and keys (call inside ``with demo:``)."""
    js = PAGE_JS.replace("__CSS__", json.dumps(PAGE_CSS + extra_css)).replace("__BRUSH__", str(BRUSH_SIZE))
    demo.load(None, None, None, js=js, api_visibility="private", queue=False)
