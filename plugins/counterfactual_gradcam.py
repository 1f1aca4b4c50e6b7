"""Example plugin: Grad-CAM's counterfactual map (Selvaraju et al. 2017, section 6), the regions whose
evidence speaks against the class: removing them would raise its score. A whole CAM method is one hook
on ic_zoo.GradientCAM, which brings the single-pass path, locking, ViT reshape and hook release.
"""
from ic_zoo import GradientCAM, register


@register("explainer", "counterfactual-gradcam", description="Grad-CAM's counterfactual map: evidence against the class")
class CounterfactualGradCAM(GradientCAM):
    positive_evidence = False  # its map is evidence against the class: never named for a blank map

    def weights(self, acts, grads):  # acts (1, C, h, w), grads (k, C, h, w) -> (k, C)
        return -grads.mean(axis=(2, 3))
