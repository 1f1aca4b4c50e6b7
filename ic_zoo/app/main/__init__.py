"""The main app's page and its handlers (``python app.py``), built from parts; the parts it shares with study
mode (the canvas, the model columns, the watchdog, the work record) are one level up, in ``ic_zoo.app``.

* ``panels``: one function per panel (header, inputs, pickers, editor, results, tools); each builds its
  components inside the caller's ``gr.Blocks`` and returns a small object naming them.
* ``ic_zoo.app.comparison``: the model columns (title, top-5 table, maps, note per model): a fixed number of slots,
  filled and shown in the same answer as the canvas. The app and study mode both show it.
* ``handlers`` and ``tool_handlers``: the event handlers, each followed by the lines that wire it. A
  handler returns ``{component: value}``; a component left out keeps its value.
* ``context``: what the handlers share (the zoos, the model checks, the per-tab state store) and the
  one function that turns a tab's session into what the page shows (``AppContext.show``).
* ``state``: ``AppState``, everything one browser tab owns.

Adding a panel: write ``def my_panel(ctx) -> MyPanel`` in ``panels.py`` (build its components, return
them in a dataclass), call it from ``app.build_demo`` where it should appear (its place on the page),
and write ``def wire_my_panel(ctx, ui)`` in ``tool_handlers.py`` with its handlers and their wiring,
called from ``handlers.wire``. A handler that changes what the model columns show calls
``ctx.show(...)``, which returns the dict to hand back.
"""
