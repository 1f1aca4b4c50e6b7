"""The analyses layer: what is measured of an edit, a map or a model, each a function of its inputs that
returns a dataclass with ``to_dict()`` (the API's JSON), read by attribute by the presentation layer.

Of a ``Session`` (what a person asks next): ``history.history`` (the tracked classes' confidence over the
edits), ``stroke_effect.stroke_effect`` (the last stroke's share of the class map beside its change),
``inpainter_check.inpainter_check`` (the last edit re-run with every filler), ``contrast.contrast`` (why a
rather than b), ``sanity.sanity`` (the map on a randomised head) and ``trust.map_trust`` (the map's
deletion AUC beside random maps'). Of maps and masks: ``metrics`` (top-|M| IoU, mean IoU, pointing,
energy, ROC-AUC) and ``trust`` (the deletion curve, ROAD).

An analysis reads a session through its public surface (``lock``, ``state``, ``maps``, ``before_last``,
``can_predict``, ``explain``) and keeps what it computes in the session's ``ResultCache`` where it is
per image version (the trust score). Analyses use the core and are used by the presentation, the apps
and the research commands; they import nothing from those layers."""
