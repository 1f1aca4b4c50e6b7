"""One error hierarchy for everything a user can trigger.

Every message is one sentence that says what went wrong and what to do about it; the app shows it as
it is, the CLI prints it and exits with status 2. The library itself never prints and never exits.
"""
from __future__ import annotations


class IcZooError(Exception):
    """Base class of every error the library raises on purpose."""


class InputError(IcZooError):
    """The image, mask or parameters a user gave cannot be used."""


class BadImageError(InputError):
    """A file that is not an image, or a damaged one."""


class ImageTooLargeError(InputError):
    """An image above the configured pixel limit (decompression-bomb guard)."""


class MaskError(InputError):
    """A mask that cannot be used."""


class ClassIndexError(InputError):
    """A class index (or label) the model does not have."""


class NoEditError(IcZooError):
    """A question about the last edit asked of a session that has none yet (a state, not a bad input)."""


class PluginError(IcZooError):
    """Anything about plugins: unknown names, clashes, missing dependencies."""


class UnknownPluginError(PluginError):
    pass


class DuplicatePluginError(PluginError):
    pass


class PluginContractError(PluginError):
    """A plugin that does not keep its kind's contract (wrong base class, missing hook, metadata declared
    twice with different values)."""


class PluginUnavailableError(PluginError):
    """A registered plugin that cannot run here (missing dependency, unsupported model)."""


class WeightsUnavailableError(IcZooError):
    """Pretrained weights are neither cached nor downloadable right now."""


class DatabaseError(IcZooError):
    """The study log cannot be opened or reached (corrupt, unwritable, unreachable, silent)."""


class ExplainerNotSupportedError(IcZooError):
    """The chosen explainer does not apply to the chosen model."""


class IcZooWarning(UserWarning):
    """Something the user should know that does not stop the work (a tiny image, NaN pixels, an empty
    mask): the CLI prints it to stderr, the app shows it beside the results."""
