"""Reading dataset pickles without letting them run code.

A pickle is a program: unpickling calls whatever functions it names, so a crafted
``cifar-100-python`` archive or mini-ImageNet cache could run anything the moment a loader
opens it. The official files hold only numpy arrays, lists, dicts, strings and numbers, so
:func:`safe_loads` unpickles with a :class:`RestrictedUnpickler` that resolves exactly the few
globals those need (numpy's array and scalar reconstruction, ``dtype``, ``bytes`` written by
Python 2, ``OrderedDict``) and refuses every other one, naming the file and the refused global.
Plain containers, strings and numbers need no global at all.
"""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

#: ``(module, name)`` pairs a dataset pickle may reference. ``numpy.core`` is numpy 1's name of
#: numpy 2's ``numpy._core``; pickles written by either refer to their own.
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),                       # bytes pickled by protocol 2
    ("collections", "OrderedDict"),
})


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside :data:`ALLOWED` (it could run code)."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only resolves :data:`ALLOWED` globals."""

    def __init__(self, file: io.BufferedIOBase, *, source: str = "the pickle", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global only if it is on the allow list; anything else raises."""
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(
                f"{self.source} refers to {module}.{name}, which a dataset pickle never needs; "
                f"refusing to load it (unpickling can run code). Only numpy arrays and plain "
                f"containers are read from dataset pickles: use the official files.")
        if module.startswith(("numpy.core.", "numpy._core.")):
            suffix = module.split(".", 2)[2]
            for candidate in (f"numpy._core.{suffix}", f"numpy.core.{suffix}"):
                try:
                    return getattr(importlib.import_module(candidate), name)
                except (ImportError, AttributeError):
                    continue
        return getattr(importlib.import_module(module), name)


def safe_loads(data: bytes, *, source: str | Path = "the pickle", encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` allowing only :data:`ALLOWED` globals; ``source`` names it in errors."""
    return RestrictedUnpickler(io.BytesIO(data), source=str(source), encoding=encoding).load()


def safe_load(path: str | Path, *, encoding: str = "ASCII") -> Any:
    """:func:`safe_loads` of the file at ``path``."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, source=str(path), encoding=encoding).load()
