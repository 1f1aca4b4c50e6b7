"""Where pretrained weights come from, and one clear error when they cannot be had.

The real loading paths stay in charge (timm ``pretrained=True`` through the Hugging Face hub,
torchvision weight enums through the torch hub checkpoint folder, transformers ``from_pretrained``,
LaMa by URL + checksum). This module only checks, before a load starts, whether the files are cached
or the host is reachable, so that an offline machine gets one sentence at once instead of a minute
of retries and a traceback.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import WeightsUnavailableError

_PROBE_TTL_S = 120.0
_probe_cache: dict[str, tuple[float, bool]] = {}
_probe_lock = threading.Lock()


def ic_zoo_cache_dir() -> Path:
    return Path(os.environ.get("IC_ZOO_CACHE") or Path.home() / ".cache" / "ic_zoo")


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def torch_checkpoint_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url``'s host answers at all (any HTTP status counts); cached for two minutes."""
    if url.startswith("file:"):
        return True
    if _env_true("IC_ZOO_OFFLINE"):  # tests and air-gapped hosts: never touch the network
        return False
    now = time.monotonic()
    with _probe_lock:
        hit = _probe_cache.get(url)
        if hit and now - hit[0] < _PROBE_TTL_S:
            return hit[1]
    try:
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "ic_zoo"})
        with urllib.request.urlopen(req, timeout=timeout):
            ok = True
    except urllib.error.HTTPError:
        ok = True  # the server answered
    except (urllib.error.URLError, OSError, ValueError):
        ok = False
    with _probe_lock:
        _probe_cache[url] = (now, ok)
    return ok


def hub_offline() -> bool:
    """True when the Hugging Face hub must not or cannot be used (HF_HUB_OFFLINE, or unreachable)."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    return not reachable(hf_endpoint())


def hf_cached_file(repo_id: str, filenames: tuple[str, ...] | list[str], revision: str | None = None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for fn in filenames:
        try:
            path = try_to_load_from_cache(repo_id, fn, revision=revision)
        except Exception:
            path = None
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


NO_PRETRAINED = "or use --no-pretrained (random weights, for testing only)"


def unavailable_message(model: str, cache: Path | str, host: str, size_hint: str = "",
                        alternative: str = NO_PRETRAINED) -> str:
    size = f" ({size_hint})" if size_hint else ""
    return (f"Weights for '{model}' are not in the cache folder {cache} and {host} cannot be reached; "
            f"connect to the internet once so they download{size}, copy them into that folder, {alternative}.")


def weights_error(model: str, reason: str) -> WeightsUnavailableError:
    """One sentence for a model whose weights cannot be had now; ``reason`` is a listing's reason
    (``hf_weights_reason``, ``url_weights_reason``, a spec's ``unavailable_reason``)."""
    return WeightsUnavailableError(f"'{model}' cannot load here: it {reason}; connect once so the weights "
                                   f"download, {NO_PRETRAINED}.")


def require_hf_weights(model: str, repo_id: str, filenames: tuple[str, ...], revision: str | None = None,
                       size_hint: str = "") -> str | None:
    """Raise WeightsUnavailableError unless the files are cached or the hub is reachable. Returns the
    cached file when it must be loaded from the cache (the hub cannot be used): the caller loads it
    from there (``local_files_only``, or timm's ``file``) instead of letting the hub client retry the
    network for about 45 s; nothing is switched for the rest of the process. None: load as usual."""
    cached = hf_cached_file(repo_id, filenames, revision)
    offline = hub_offline()
    if cached is None and offline:
        raise WeightsUnavailableError(unavailable_message(model, hf_cache_dir(), hf_endpoint().split("//")[-1],
                                                          size_hint))
    return cached if offline else None


def hf_weights_reason(repo_id: str, filenames: tuple[str, ...], size_hint: str = "") -> str | None:
    """For listings: None if usable, else why not (one line)."""
    if hf_cached_file(repo_id, filenames) is not None:
        return None
    if hub_offline():
        size = f" of {size_hint}" if size_hint else ""
        return f"needs a download{size} from {hf_endpoint().split('//')[-1]}, which cannot be reached"
    return None


def url_filename(url: str) -> str:
    return os.path.basename(urllib.parse.urlparse(url).path)


def url_cached_file(url: str, folder: Path) -> Path | None:
    path = folder / url_filename(url)
    return path if path.is_file() else None


def require_url_weights(model: str, url: str, folder: Path, size_hint: str = "",
                        alternative: str = NO_PRETRAINED) -> None:
    if url_cached_file(url, folder) is None and not reachable(url):
        host = urllib.parse.urlparse(url).netloc or url
        raise WeightsUnavailableError(unavailable_message(model, folder, host, size_hint, alternative))


def url_weights_reason(url: str, folder: Path, size_hint: str = "") -> str | None:
    if url_cached_file(url, folder) is not None:
        return None
    if not reachable(url):
        host = urllib.parse.urlparse(url).netloc
        size = f" of {size_hint}" if size_hint else ""
        return f"needs a download{size} from {host}, which cannot be reached"
    return None


def file_digest(path: str | os.PathLike, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_checked(model: str, url: str, dest: Path, *, md5: str | None = None, sha256: str | None = None,
                     size_hint: str = "", alternative: str = NO_PRETRAINED) -> Path:
    """Return ``dest`` if present with the right checksum, else download it there (atomically) and
    verify it. A wrong checksum deletes the file and raises WeightsUnavailableError."""
    dest = Path(dest)

    def verify(path: Path) -> str | None:
        if md5 and file_digest(path, "md5") != md5.lower():
            return "md5"
        if sha256 and file_digest(path, "sha256") != sha256.lower():
            return "sha256"
        return None

    if dest.is_file():
        bad = verify(dest)
        if bad is None:
            return dest
        dest.unlink()  # a damaged or foreign file: fetch again
    require_url_weights(model, url, dest.parent, size_hint, alternative)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    os.close(fd)
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "ic_zoo"})
        with urllib.request.urlopen(req, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        bad = verify(Path(tmp))
        if bad is not None:
            raise WeightsUnavailableError(
                f"The download of '{model}' from {url} does not match its known {bad} checksum, so it was "
                "discarded; try again later or check the URL.")
        os.replace(tmp, dest)
    except WeightsUnavailableError:
        raise
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsUnavailableError(f"Downloading '{model}' from {url} failed ({exc}); check the connection "
                                      f"or put the file at {dest}.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest

