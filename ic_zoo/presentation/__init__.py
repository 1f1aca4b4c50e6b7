"""The presentation layer: what a person sees, computed without Gradio.

``present``: tables, map panels, status lines and every sentence the app shows; ``viz``: maps into
pictures (overlays, the diverging difference map, boxes); ``export``: an edit's files (result.json and
its maps) for the CLI and the app's download. It uses the core and the analyses; the apps use it."""
