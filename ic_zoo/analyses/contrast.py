""""Why a rather than b": the contrastive class map of one model."""
from __future__ import annotations


def contrast(session, name: str, a: int, b: int, explainer: str = "gradcam"):
    """Maps of logit[a] - logit[b] (a ``ClassMaps``) for ``session``'s original and modified image, from
    the explainer's tapped run (Grad-CAM and HiResCAM contrast; others raise ExplainerNotSupportedError)."""
    from ..errors import ExplainerNotSupportedError
    from ..session import ClassMaps, get_explainer

    ex = get_explainer(explainer)
    if not ex.contrasts():
        raise ExplainerNotSupportedError(f"{explainer} cannot contrast two classes; use Grad-CAM or HiResCAM.")
    with session.lock:
        clf = session.classifier(name)
        reason = ex.supports(clf)
        if reason:
            raise ExplainerNotSupportedError(reason[0].upper() + reason[1:] + ".")
        outs = []
        for v in ([0, session.version] if session.version else [0]):
            st = session.state(name, v, ex)
            outs.append(ex.contrast_from_run(clf, st.run, st.x, a, b))
        o, m = outs[0], outs[-1]
        return ClassMaps(name, f"{ex.name} ({clf.labels[a]} rather than {clf.labels[b]})", int(a),
                         f"{clf.labels[a]} rather than {clf.labels[b]}", o.raw[0], m.raw[0], o.normalized[0],
                         m.normalized[0], clf.input_box(session.original.shape), session.original.shape[:2])
