"""The app layer: the Gradio apps and what serves them. Nothing below this layer imports it.

* ``main/``: the main app's page (panels) and its handlers (``python app.py``);
* ``study/``: study mode's pages (``python app.py --study``);
* what both apps stand on: ``painter`` (the canvas: strokes as points, the image back as a JPEG),
  ``comparison`` (the model columns), ``watchdog`` (no page hangs: the reload sentence), ``work`` (a
  tab's work kept by the browser, rebuilt on any replica), ``gradio_util`` (the error guard, the tab
  store, the editor value, the limits) and ``gradio_internals`` (every use of a Gradio internal);
* serving: ``serve`` (one replica: /healthz, the placeholder while loading, the drain on SIGTERM),
  ``jobs`` (long jobs: a PostgreSQL job queue, procrastinate, or a worker thread) and ``client`` (a
  ``gradio_client`` wrapper for the app behind replicas).
"""
