"""Test set-up: everything offline, every cache in a temporary folder, weights generated here.

Model hubs are never contacted: HF_HUB_OFFLINE=1 and IC_ZOO_OFFLINE=1. Tests that exercise the real
``pretrained=True`` paths first write weights they generate into the same cache layouts the libraries
read (torch hub checkpoints, the Hugging Face hub cache, ic_zoo's LaMa folder).
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TMP = Path(tempfile.mkdtemp(prefix="ic_zoo_tests_"))
os.environ.update({
    "HF_HOME": str(_TMP / "hf"),
    "HF_HUB_CACHE": str(_TMP / "hf" / "hub"),
    "TORCH_HOME": str(_TMP / "torch"),
    "IC_ZOO_CACHE": str(_TMP / "ic_zoo"),
    "HF_HUB_OFFLINE": "1",
    "IC_ZOO_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "IC_ZOO_PLUGINS_DIR": str(ROOT / "plugins"),
})
os.environ.pop("IC_ZOO_DISABLE_PLUGIN_AUTOLOAD", None)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

def _patient_clients() -> None:
    """gradio_client downloads a result's files with httpx's default 5 s read timeout unless told
    otherwise; on a machine whose cores other jobs keep busy that is too short (CI saw it). Every test
    client gets 120 s unless the test chose its own."""
    try:
        from gradio_client import Client
    except ImportError:
        return
    init = Client.__init__
    if getattr(init, "_ic_zoo_patient", False):
        return

    def patient_init(self, *args, httpx_kwargs=None, **kwargs):
        httpx_kwargs = dict(httpx_kwargs or {})
        httpx_kwargs.setdefault("timeout", 120)
        init(self, *args, httpx_kwargs=httpx_kwargs, **kwargs)

    patient_init._ic_zoo_patient = True
    Client.__init__ = patient_init


_patient_clients()


IMAGENET_MODELS = ("squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k")


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _TMP


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo shipped by scikit-image (public domain): Chelsea the cat, 300 x 451."""
    from skimage import data

    return np.ascontiguousarray(data.chelsea())


def _fake_lama_module():
    import torch

    class FakeLama(torch.nn.Module):
        """Same signature as big-lama.pt: (image [0,1] 1x3xHxW, mask 1x1xHxW) -> image [0,1]."""

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            known = image * (1 - mask)
            weight = torch.nn.functional.avg_pool2d(1 - mask, 15, 1, 7)
            fill = torch.nn.functional.avg_pool2d(known, 15, 1, 7) / weight.clamp(min=1e-3)
            return image * (1 - mask) + fill * mask

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is what big-lama.pt is
        return torch.jit.script(FakeLama())


@pytest.fixture(scope="session", autouse=True)
def fake_lama(tmp_root):
    """A TorchScript model with LaMa's interface, served from a file:// URL with its checksum, so the
    real download -> checksum -> torch.jit.load path runs offline."""
    src = tmp_root / "mirror" / "big-lama.pt"
    src.parent.mkdir(parents=True, exist_ok=True)
    _fake_lama_module().save(str(src))
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    os.environ["IC_ZOO_LAMA_URL"] = src.as_uri()
    os.environ["IC_ZOO_LAMA_MD5"] = md5
    return {"url": src.as_uri(), "md5": md5, "path": src}


def _write_hf_snapshot(repo_id: str, files: dict[str, bytes | Path]) -> Path:
    """Lay files out as the Hugging Face hub cache does: refs/main -> snapshots/<commit>/<file>."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, data in files.items():
        dest = snap / name
        if isinstance(data, Path):
            dest.write_bytes(data.read_bytes())
        else:
            dest.write_bytes(data)
    return snap


@pytest.fixture(scope="module")
def no_hub_weights(tmp_path_factory):
    """A machine without the hubs and with nothing cached (even when another test cached generated
    ImageNet weights): only what ships in packages can load, as on a fresh offline install."""
    from huggingface_hub import constants

    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("empty_caches")
    mp.setattr(constants, "HF_HUB_CACHE", str(d / "hf"))
    mp.setenv("TORCH_HOME", str(d / "torch"))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def hf_snapshot():
    return _write_hf_snapshot


@pytest.fixture(scope="session")
def imagenet_weights(tmp_root):
    """Random weights (seeded) for the three default ImageNet models, written where torchvision and
    timm look for pretrained weights. Returns model key -> {parameter name: tensor} to compare with."""
    import timm
    import torch
    import torchvision
    from safetensors.torch import save_file

    written = {}
    torch.manual_seed(1234)
    sq = torchvision.models.squeezenet1_1()
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.save(sq.state_dict(), ckpt / "squeezenet1_1-b8a52dc0.pth")
    written["squeezenet1_1"] = sq.state_dict()
    for name in IMAGENET_MODELS[1:]:
        m = timm.create_model(name, pretrained=False)
        sd = {k: v.contiguous() for k, v in m.state_dict().items()}
        path = tmp_root / f"{name}.safetensors"
        save_file(sd, str(path))
        _write_hf_snapshot(f"timm/{name}", {"model.safetensors": path})
        path.unlink()
        written[name] = sd
    return written


# -- PostgreSQL: a real server on loopback, started for the session ------------------------------------
def _loopback():
    """benchmarks/replicas.py: PostgreSQL, the replicas and the proxy on loopback (tests and benchmark)."""
    bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import replicas

    return replicas


def _free_port() -> int:
    return _loopback().free_port()


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL cluster in a temporary folder (trust auth, loopback only); skipped with the
    reason where no server can be started (.ci/run installs Debian's postgresql package)."""
    server = _loopback().postgres()
    try:
        url = server.__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty database on the session's server."""
    return _loopback().new_database(pg_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each study-log test runs on SQLite (a file) and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.sqlite'}"
    return request.getfixturevalue("pg_url")


def hooks(model) -> int:
    """How many forward, forward-pre and backward hooks the modules of ``model`` hold (0: all released)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def seeded_classifiers(names) -> dict:
    """Each classifier built on the CPU from torch seed 0 (random weights, reproducible; the Flower2D ones
    with their shipped weights)."""
    import torch

    import ic_zoo

    out = {}
    for name in names:
        torch.manual_seed(0)
        out[name] = ic_zoo.create("classifier", name, pretrained=name.startswith("flower2d"), device="cpu")
    return out


def held_out_flower(size: int = 128) -> np.ndarray:
    """One held-out double-12c flower (test sample 7001)."""
    from ic_zoo.flower2d import generator as g

    return g.render(g.sample_params("double-12c", 0, "test", 7001), size)[0]


def slow_except(values, *fast):
    """Parametrize ``values``, all but ``fast`` marked slow: the fast tier (``-m "not slow"``) keeps a
    representative case, the full suite runs them all."""
    return [v if v in fast else pytest.param(v, marks=pytest.mark.slow) for v in values]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """With a marker expression (the fast tier, ``-m "not slow"``), name any ic_zoo module that no test
    of the run imported: the tier is meant to reach every module."""
    if not config.getoption("markexpr"):
        return
    pkg = ROOT / "ic_zoo"
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in pkg.rglob("*.py")}
    missing = sorted(n for n in names if n not in sys.modules and not n.endswith("__main__"))
    terminalreporter.write_line("ic_zoo modules this run did not import: " + (", ".join(missing) or "none"))
