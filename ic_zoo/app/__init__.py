"""The app layer: the Gradio apps and what serves them. Nothing below this layer imports it.

* ``main/``: the main app's page (panels) and its handlers (``python app.py``);
* ``study/``: study mode's pages (``python app.py --study``): ``ui`` (``StudyApp`` and the page), its
  handlers in three groups (``consent``, ``task``, ``admin``) and ``pages`` (components, state, sentences);
* what both apps stand on: ``platform`` (``AppPlatform``, the base of the main app's ``AppContext`` and of
  ``StudyApp``: plugins, device and weights, limits, tab store, image folder, editor value, concurrency,
  jobs, error guard), ``painter`` (the canvas: strokes as points, the image back as a JPEG),
  ``comparison`` (the model columns), ``watchdog`` (no page hangs: the reload sentence), ``work`` (a
  tab's work kept by the browser, rebuilt on any replica), ``gated_canvas`` (the input-gated canvas and
  the editor values), ``guard`` (the error guard: one sentence), ``tab_store`` (bounded memory),
  ``zerogpu`` (ZeroGPU's GPU calls and wire format), ``page_assets`` (the page's CSS and JavaScript, files
  in ``static/``) and ``gradio_internals`` (every use of a Gradio internal);
* serving: ``serve`` (one replica: /healthz, the placeholder while loading, the drain on SIGTERM),
  ``jobs`` (long jobs: a PostgreSQL job queue, procrastinate, or a worker thread) and ``client`` (a
  ``gradio_client`` wrapper for the app behind replicas).
"""
