"""Interactive Classification: the Gradio app (layout and event wiring only; the panels and handlers are in ic_zoo.app.main,
the work in ic_zoo).

    python app.py                        # http://127.0.0.1:7860
    python app.py --share                # a temporary public link (expires after 72 h)
    python app.py --host 0.0.0.0 --port 8080 --auth alice:secret

Paint over part of the image: the region is inpainted, every selected model re-classifies the result,
and each model's top-5 (with the change), class maps and the crop it sees are shown side by side.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402

from ic_zoo.app import gradio_internals, page_assets  # noqa: E402
from ic_zoo.errors import IcZooError  # noqa: E402
from ic_zoo.app import watchdog  # noqa: E402
from ic_zoo.app.main import context, handlers, panels  # noqa: E402
from ic_zoo.app.main.context import MAX_MODELS, MAX_SIDE, ROWS  # noqa: E402  (for scripts and tests)

__all__ = ["MAX_MODELS", "MAX_SIDE", "ROWS", "build_demo", "build_study", "example_list", "main"]

log = logging.getLogger("ic_zoo.app")
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
# Gradio's own per-session records (a copy of the page's config each, created even by a bare upload
# call): at most this many, oldest dropped; well above IC_ZOO_MAX_SESSIONS, which bounds the images
SESSION_CAPACITY = int(os.environ.get("IC_ZOO_GRADIO_SESSIONS", "1000"))
SHARE_WARNING = ("Public share links expire after 72 hours and depend on Gradio's relay; for a user study, "
                 "deploy a Hugging Face Space or self-host (python app.py --host 0.0.0.0 --auth user:pass).")


def example_list() -> list[tuple[str, str]]:
    """(path, caption) of the examples, photos first (see ic_zoo.app.main.context.example_list)."""
    return context.example_list(EXAMPLES)


def build_demo(models: list[str] | None = None, device: str | None = None, max_side: int = MAX_SIDE,
               plugins_dir: str | None = None, concurrency: int | None = None, pretrained: bool = True) -> gr.Blocks:
    """The app's page, top to bottom; each panel is a function of ic_zoo.app.main.panels, its events are wired by
    ic_zoo.app.main.handlers (see ic_zoo/app/main/__init__.py to add a panel)."""
    gradio_internals.check_version()  # one sentence outside the Gradio versions this app is tested on
    ctx = context.AppContext(models, device, max_side, plugins_dir, concurrency, pretrained,
                             examples_dir=EXAMPLES, default_plugins=HERE / "plugins")
    with gr.Blocks(title="Interactive Classification", fill_width=True, delete_cache=(600, 3600)) as demo:
        state = panels.tab_state(ctx)
        header = panels.header()  # the title and the tutorial (open on the first visit only)
        inputs = panels.inputs(ctx)  # the examples and the upload
        pickers = panels.pickers(ctx)  # models, inpainter, explainer
        with gr.Row(equal_height=False, elem_id="workspace"):
            editor = panels.editor(ctx)  # the canvas, its buttons and keys, the status, other selections
            results = panels.results()  # one column per model
        panels.map_viewer(results)  # the chosen model's maps, large
        tools = panels.tools(ctx)  # before / after, history, slow maps, contrast, ... in tabs
        page_assets.page_script(demo)  # styles, keys, the busy sign
        # the tab's work, rebuilt on a reload or on another replica (ui.work): Gradio encrypts it with a key
        # that must be the same on every replica (IC_ZOO_BROWSER_SECRET), and the record is signed with it
        work = gr.BrowserState(None, storage_key="ic_zoo_work", secret=ctx.work_secret)
        # an API client keeps the record too (the last string of /load's or /edit's answer) and sends it to
        # /restore after a failover: a hidden box, the API's only way in
        work_in = gr.Textbox(visible=False, elem_id="restore_record")
        ctx.ui = panels.Page(state, header, inputs, pickers, editor, results, tools, work, work_in)
        handlers.wire(ctx, ctx.ui, demo)
        # no hang: a request that fails, or an event never answered, ends in the reload sentence (the reload
        # rebuilds the work from the browser's record); the tools may work for minutes: 10 x the quiet bound
        watchdog.install(demo, context.MOVED, max_factor=10)
    demo.ic_zoo_tabs = ctx.tabs  # for tests and the soak benchmark
    if ctx.jobs is not None:  # ic_zoo.app.serve, after the drain: a job still running goes back to the queue
        demo.ic_zoo_closers = [ctx.jobs.close]
    from ic_zoo.app import serve

    # python app.py says ready only after this (ic_zoo.app.serve): the default models built, one stroke made
    demo.ic_zoo_warm = serve.app_warmup(ctx.default, device=ctx.device, pretrained=ctx.pretrained)
    return demo


def build_study(path: str, db: str | None = None, **kwargs) -> gr.Blocks:
    """Study mode: the study's tasks only, consent first, every interaction logged (see README)."""
    from ic_zoo import discovery
    from ic_zoo.app import serve
    from ic_zoo.app.study.ui import build_study_demo
    from ic_zoo.study import load_study

    try:
        # the plugins first: a plugin may add a question type the study file names
        discovery.ensure_loaded(**({"plugins_dir": kwargs["plugins_dir"]} if kwargs.get("plugins_dir") else {}))
        study = load_study(path)
        demo = build_study_demo(study, db, **kwargs)
    except IcZooError as exc:
        sys.exit(f"error: {exc}")
    # python app.py says ready only after this (ic_zoo.app.serve): every task's models, explainer and inpainter
    demo.ic_zoo_warm = serve.study_warmup(study, device=kwargs.get("device"), pretrained=kwargs.get("pretrained", True))
    return demo


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Interactive Classification (Gradio app)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="create a temporary public link (expires after 72 h)")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS", help="require a login (repeatable)")
    p.add_argument("--model", "-m", action="append", help="models to compare by default (repeatable; default: $IC_ZOO_MODELS, comma- or semicolon-separated)")
    p.add_argument("--device", default=os.environ.get("IC_ZOO_DEVICE") or None,
                   help="cpu, cuda, ... (default: $IC_ZOO_DEVICE, else cuda if available)")
    p.add_argument("--plugins-dir", default=None, help="folder of plugin .py files (default: $IC_ZOO_PLUGINS_DIR, else the plugins/ folder beside app.py; never the working directory)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE, help="uploads are downscaled to this longer side")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for trying the app offline)")
    p.add_argument("--study", default=os.environ.get("IC_ZOO_STUDY"),
                   help="run a user study defined in this YAML/TOML file (see examples/study/)")
    p.add_argument("--db", default=os.environ.get("IC_ZOO_STUDY_DB"),
                   help="study log: sqlite:///file.sqlite (default: <study name>.sqlite here) or postgresql://...")
    args = p.parse_args(argv)
    if not args.model:  # the container's way to name them: IC_ZOO_MODELS=a,b,c (a;b;c when a clip: name has commas)
        env = os.environ.get("IC_ZOO_MODELS", "")
        args.model = [m.strip() for m in env.split(";" if ";" in env else ",") if m.strip()] or None
    return args


def main(argv=None) -> None:
    """Build, serve and stop gracefully (see ic_zoo.app.serve: 503 on /healthz while loading, 200 when ready,
    503 and no new events after SIGTERM while the ones in flight finish)."""
    from ic_zoo.app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request Gradio makes to itself
    args = parse_args(argv)
    auth = []
    for item in args.auth:
        if ":" not in item:
            sys.exit("--auth takes user:password")
        auth.append(tuple(item.split(":", 1)))
    if args.share:
        print(f"NOTE: {SHARE_WARNING}", flush=True)

    def build():
        if args.study:
            app = build_study(args.study, args.db, device=args.device, pretrained=not args.no_pretrained,
                              plugins_dir=args.plugins_dir,  # reachable from elsewhere: its secrets must be set
                              public=args.share or args.host not in ("127.0.0.1", "localhost", "::1"))
        else:  # a --model that cannot work here raises its sentence, said below before anything starts
            app = build_demo(models=args.model, device=args.device, max_side=args.max_side,
                             plugins_dir=args.plugins_dir, pretrained=not args.no_pretrained)
        app.queue(default_concurrency_limit=2)
        return app

    try:
        code = serve.run(build, args.host, args.port,
                         dict(share=args.share, auth=auth or None, max_file_size=serve.MAX_FILE_SIZE,
                              footer_links=[] if args.study else ["api"], show_error=False,
                              state_session_capacity=SESSION_CAPACITY))
    except OSError as exc:  # the port is taken, the interface does not exist
        sys.exit(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}).")
    except IcZooError as exc:
        sys.exit(f"error: {exc}")
    serve.exit_now(code)  # at once: nothing left may hold the process past its grace period


def __getattr__(name: str):
    """``gradio app.py`` (hot reload) and ``from app import demo`` find a module-level ``demo``, built on
    first use: importing app.py builds nothing (tests and scripts import it for ``build_demo``). A Space
    running a study sets IC_ZOO_STUDY (and IC_ZOO_STUDY_DB); IC_ZOO_APP_NO_DEMO=1 makes ``demo`` None."""
    if name != "demo":
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    if os.environ.get("IC_ZOO_APP_NO_DEMO") == "1":
        built = None
    elif os.environ.get("IC_ZOO_STUDY"):
        built = build_study(os.environ["IC_ZOO_STUDY"], os.environ.get("IC_ZOO_STUDY_DB"))
    else:
        built = build_demo()
    globals()["demo"] = built
    return built


if __name__ == "__main__":
    main()
