"""The dataset registry: one :class:`~maml_probe.data.spec.DatasetSpec` per dataset name.

The built-in specs are the modules of :mod:`maml_probe.data.specs`, each defining ``SPEC``;
they are imported on first use, so adding a dataset means adding one module there (plus a
generated fixture for its tests). :func:`register` adds a spec at run time; every listing,
the data CLI, ``dataset_available``, the loaders' folder lookup, the model input shapes and
the experiment settings read the registry when called, so they see it at once.

``DATASET_NAMES`` is every registered name in listing order (``synthetic`` first), read
afresh on each attribute access; ``from ... import DATASET_NAMES`` takes the names of that
moment.
"""
from __future__ import annotations

import importlib
import pkgutil

from .spec import DatasetSpec

_SPECS: dict[str, DatasetSpec] = {}
_builtins_loaded = False


def check_choice(argument: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the argument and the allowed values if ``value`` is not one.

    Args:
        argument: The argument's name, as the user wrote it (``"dataset"``, ``"split"``).
        value: The value given.
        allowed: The values accepted.
    """
    if value not in allowed:
        raise ValueError(f"{argument}={value!r} is not one of {', '.join(map(repr, allowed))}")


def _load_builtins() -> dict[str, DatasetSpec]:
    global _builtins_loaded
    if not _builtins_loaded:
        from . import specs as package

        found: dict[str, DatasetSpec] = {}
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            spec = getattr(module, "SPEC", None)
            if not isinstance(spec, DatasetSpec):
                raise TypeError(f"{module.__name__} must define SPEC = DatasetSpec(...)")
            found[spec.name] = spec
        _SPECS.update(found)
        _builtins_loaded = True
    return _SPECS


def dataset_specs(*, on_disk: bool | None = None) -> tuple[DatasetSpec, ...]:
    """The registered specs in listing order (by ``order``, then name).

    Args:
        on_disk: ``True``: only datasets read from files; ``False``: only generated ones;
            ``None``: all.

    Returns:
        The matching specs.
    """
    chosen = [s for s in _load_builtins().values() if on_disk is None or s.on_disk == on_disk]
    return tuple(sorted(chosen, key=lambda s: (s.order, s.name)))


def dataset_names(*, on_disk: bool | None = None) -> tuple[str, ...]:
    """Names of the registered datasets in listing order.

    Args:
        on_disk: As in :func:`dataset_specs`.

    Returns:
        The names, e.g. ``("omniglot", "miniimagenet", "cifarfs")`` with ``on_disk=True``.
    """
    return tuple(s.name for s in dataset_specs(on_disk=on_disk))


def get_spec(name: str, *, on_disk: bool | None = None) -> DatasetSpec:
    """The spec of dataset ``name``.

    Args:
        name: A registered dataset name.
        on_disk: Accept only datasets read from files (``True``) or only generated ones
            (``False``); ``None`` accepts any.

    Returns:
        Its :class:`DatasetSpec`.

    Raises:
        ValueError: ``name`` is not registered (or not of the requested kind); the message
            lists the accepted names.
    """
    check_choice("dataset", name, dataset_names(on_disk=on_disk))
    return _SPECS[name]


def paper_datasets() -> tuple[str, ...]:
    """Datasets the paper trains convolutional models on, in the order of its tables.

    Returns:
        Names ordered by ``spec.paper.column`` (Tables 2, A1, A3: Omniglot, CIFAR-FS,
        mini-ImageNet).
    """
    chosen = [s for s in dataset_specs() if s.paper is not None]
    return tuple(s.name for s in sorted(chosen, key=lambda s: (s.paper.column, s.name)))


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add a dataset to the registry.

    Args:
        spec: The dataset's spec.
        replace: Allow replacing a registered spec of the same name.

    Returns:
        ``spec``.

    Raises:
        ValueError: The name is taken and ``replace`` is false.
    """
    specs = _load_builtins()
    if spec.name in specs and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered (pass replace=True)")
    specs[spec.name] = spec
    return spec


def unregister(name: str) -> DatasetSpec:
    """Remove a dataset from the registry.

    Args:
        name: A registered dataset name.

    Returns:
        The removed spec.
    """
    get_spec(name)
    return _SPECS.pop(name)


def __getattr__(name: str) -> tuple[str, ...]:
    if name == "DATASET_NAMES":
        return dataset_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
