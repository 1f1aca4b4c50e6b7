"""The CAM-family base (ic_zoo.GradientCAM) and the example explainer plugin built on it (issue 14): a method
is one hook, and it gets the single-pass path, the ViT reshape and hook release from the base."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import hooks

import ic_zoo
from ic_zoo import GradientCAM
from ic_zoo.errors import PluginContractError
from ic_zoo.flower2d import generator as g
from ic_zoo.registry import Registry


class PlainGradCAM(GradientCAM):
    """Grad-CAM in one hook: the channel weights are the gradients' spatial means."""

    def weights(self, acts, grads):
        return grads.mean(axis=(2, 3))


@pytest.fixture(scope="module")
def flower():
    p = g.sample_params("double-12c", 0, "test", 7003)
    img, _ = g.render(p, 192)
    return img, p["label"]


@pytest.mark.parametrize("model", ["flower2d/resnet", "flower2d/vit"])
def test_one_hook_gives_the_built_in_grad_cam_on_cnns_and_vits(flower, model):
    reg = Registry()
    reg.register("explainer", "plain-gradcam", PlainGradCAM)
    mine = reg.create("explainer", "plain-gradcam")
    ours = ic_zoo.instance("explainer", "gradcam")  # equal to pytorch-grad-cam's (test_explainers)
    clf = ic_zoo.get_classifier(model)
    x = clf.preprocess(flower[0])
    classes = [flower[1], (flower[1] + 1) % clf.num_classes]
    a, b = mine.explain(clf, x, classes), ours.explain(clf, x, classes)
    assert a.normalized.shape == b.normalized.shape == (2,) + tuple(x.shape[-2:])
    np.testing.assert_allclose(a.normalized, b.normalized, atol=1e-4)
    assert hooks(clf.model) == 0 and mine.cost == "interactive"


def test_the_example_plugin_is_loaded_and_points_against_the_class(flower):
    """plugins/counterfactual_gradcam.py: its map is Grad-CAM's with the weights negated, so it marks
    where the class's own Grad-CAM does not (the petals and centre that decide a Flower2D class)."""
    spec = ic_zoo.get_spec("explainer", "counterfactual-gradcam")
    assert spec.source.endswith("plugins/counterfactual_gradcam.py") and spec.meta["cost"] == "interactive"
    body = [ln for ln in open(spec.source).read().split('"""')[-1].splitlines() if ln.strip()]
    assert len(body) <= 10, body  # a whole CAM method in a few lines
    s = ic_zoo.Session(flower[0])
    cf = s.explain("flower2d/resnet", flower[1], "counterfactual-gradcam")
    gc = s.explain("flower2d/resnet", flower[1], "gradcam")
    top = gc.original >= np.quantile(gc.original, 0.9)
    assert cf.original[top].mean() < 0.5 * cf.original[~top].mean()  # low where Grad-CAM is high
    assert hooks(ic_zoo.get_classifier("flower2d/resnet").model) == 0


def test_a_gradient_cam_without_its_hook_is_refused_at_registration():
    class Nothing(GradientCAM):
        pass

    with pytest.raises(PluginContractError, match="does not implement weights\\(acts, grads\\) or cam\\(acts, grads\\)"):
        Registry().register("explainer", "nothing", Nothing)
