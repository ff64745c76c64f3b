"""What the loaders of corpora and encoders share about the Hugging Face hub.

* :func:`hub_offline`: whether the environment switches the hub off, the one
  check behind "the hub is switched off" in ``load_corpus`` and
  ``load_encoder``.
* :func:`hub_errors`: the exceptions that mean "the hub, the network or a
  file did not deliver". Only these become ``CorpusUnavailableError`` /
  ``EncoderUnavailableError``; anything else (a ``TypeError`` from a changed
  library signature, an ``AttributeError``) is a bug and propagates as it is.

Importing this module imports nothing heavy: ``hub_errors`` looks the
library classes up when it is called, which a loader does only in its
``except`` clause, after something failed.

Taught in: chapter 5.1 Preparing the data (loading corpora); chapter 5.2 (loading encoders).
"""

from __future__ import annotations

import importlib
import os

__all__ = ["hub_errors", "hub_offline"]

_TRUE = ("1", "true", "yes", "on")
# (module, class) of the library errors that report a failed download or a missing remote file;
# most of the hub's errors are OSError subclasses already, these are not all.
_LIBRARY_ERRORS = (
    ("huggingface_hub.errors", "EntryNotFoundError"),
    ("huggingface_hub.errors", "HfHubHTTPError"),
    ("datasets.exceptions", "DatasetsError"),
)


def hub_offline(*variables: str) -> bool:
    """Whether ``HF_HUB_OFFLINE``, or one of ``variables``, is set to a true value now.

    True values are ``1``, ``true``, ``yes`` and ``on`` (any case, spaces
    ignored), as the Hugging Face libraries read them.

    Arguments:
        *variables: further variables that switch the hub off for the caller,
            e.g. ``"HF_DATASETS_OFFLINE"`` for corpora.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "1"}):
        ...     hub_offline(), hub_offline("HF_DATASETS_OFFLINE")
        (False, True)
    """
    return any(
        os.environ.get(variable, "").strip().lower() in _TRUE for variable in ("HF_HUB_OFFLINE", *variables)
    )


def hub_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean the hub (or the network, or a file) did not deliver.

    ``OSError`` (connection failures, timeouts, missing files, HTTP errors of
    ``requests`` and of ``huggingface_hub``) and, when installed,
    ``huggingface_hub``'s ``EntryNotFoundError`` and ``HfHubHTTPError`` and
    ``datasets``' ``DatasetsError`` (a dataset that cannot be found, fetched or
    built). Programming errors (``TypeError``, ``AttributeError``,
    ``KeyError``, ...) are not among them.

    Returns:
        A tuple for an ``except`` clause.

    Example:
        >>> OSError in hub_errors() and TypeError not in hub_errors()
        True
    """
    errors: list[type[BaseException]] = [OSError]
    for module, name in _LIBRARY_ERRORS:
        try:
            error = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):  # an older or newer library without that class
            continue
        if isinstance(error, type) and issubclass(error, BaseException):
            errors.append(error)
    return tuple(errors)
