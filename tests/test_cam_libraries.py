"""Issue 40 item 3, the small form: ic_zoo, pytorch-grad-cam and TorchCAM compute the same Grad-CAM map of the
same model and layer (to 1e-4 after pytorch-grad-cam's normalisation), the timings are measured as multiples
of a forward pass, and Average Drop / Increase in Confidence as ours computes them equal torchcam.metrics'."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
pytest.importorskip("torchcam")

import cam_libraries as C  # noqa: E402


def test_the_three_libraries_agree_on_grad_cam_and_the_metric_is_torchcams(tmp_path):
    doc = C.run(C.MODELS[:1], ("gradcam",), repeats=1, photos=False, log=lambda s: None)
    (row,) = doc["rows"]
    assert row["max_diff_ours_pgc"] <= 1e-4 and row["max_diff_ours_torchcam"] <= 1e-4
    assert row["layer"] == "inner.layer4.1" and row["forward_ms"] > 0  # the last block, in the logits module
    for lib in ("ic_zoo", "pytorch-grad-cam", "torchcam"):
        assert row[f"{lib} one class"] > 0 and row[f"{lib} top-5"] > 0
    assert doc["metric_check"] <= 1e-6
    assert "| resnet18 | gradcam |" in C.table(doc)


def test_the_metric_by_hand():
    """Average Drop: max(0, p - p_masked) / p; Increase in Confidence: p_masked > p (a map of ones keeps p)."""
    import numpy as np
    import torch

    import ic_zoo

    clf = ic_zoo.get_classifier("torchvision:resnet18", pretrained=False, device="cpu")
    torch.manual_seed(2)
    x = torch.randn(1, 3, 224, 224)
    c = int(clf.predict_tensor(x).top1)
    assert C.avg_drop_incr(clf, x, np.ones((224, 224), np.float32), c) == (0.0, 0.0)
    drop, _ = C.avg_drop_incr(clf, x, np.zeros((224, 224), np.float32), c)
    with torch.no_grad():
        p = torch.softmax(clf.forward(torch.cat([x, 0 * x])), -1)[:, c]
    assert drop == pytest.approx(max(0.0, float(p[0] - p[1])) / float(p[0]), rel=1e-5)
