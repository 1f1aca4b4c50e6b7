"""The analyses layer: what is measured of an edit, a map or a model, as functions of their inputs.

``trust``: a map's deletion AUC beside random maps' (the trust score), and pytorch-grad-cam's ROAD;
``metrics``: the localisation metrics (top-|M| IoU, mean IoU, pointing, energy in mask, ROC-AUC).
Analyses use the core (session, classifiers, inpainters, explainers) and are used by the presentation,
the apps and the research commands; they import nothing from those layers."""
