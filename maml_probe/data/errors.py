"""Error types and the messages that tell a user how to fix a missing or broken dataset.

The expected layout and the install command of each dataset come from its
:class:`~maml_probe.data.spec.DatasetSpec` (``layout``, ``install_command``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .registry import get_spec


class IntegrityError(ValueError):
    """A source archive or download is truncated, corrupt, or fails its checksum."""


def install_command(dataset: str) -> str:
    """The CLI commands that install ``dataset``.

    Args:
        dataset: A dataset read from disk.

    Returns:
        The command line(s), as shown in error messages.
    """
    return get_spec(dataset, on_disk=True).install_command


def missing_dataset(dataset: str, searched: Sequence[Path], what: str = "") -> FileNotFoundError:
    """A ``FileNotFoundError`` naming the folders searched, the layout and the install command.

    Args:
        dataset: The dataset that was not found.
        searched: Paths looked at, in order.
        what: Which part was missing (e.g. ``"split 'val'"``), if not all of it.

    Returns:
        The error, for the caller to raise.
    """
    spec = get_spec(dataset, on_disk=True)
    where = "\n".join(f"  {p}" for p in searched)
    detail = f" ({what})" if what else ""
    return FileNotFoundError(
        f"{dataset} dataset not found{detail}. Searched:\n{where}\n"
        f"Expected layout inside the data directory:\n{spec.layout}\n"
        f"Install it with: {spec.install_command}\n"
        f"or point root= / $MAML_PROBE_DATA at the directory that holds it."
    )


def corrupt_source(path: Path, dataset: str, reason: object) -> IntegrityError:
    """An ``IntegrityError`` for a broken source file, with the re-install command.

    Args:
        path: The broken file.
        dataset: The dataset it belongs to.
        reason: What is wrong with it (an exception or a message).

    Returns:
        The error, for the caller to raise.
    """
    return IntegrityError(
        f"{path} is corrupt or truncated ({reason}); nothing was cached. Delete it and "
        f"reinstall with: {install_command(dataset)}"
    )
