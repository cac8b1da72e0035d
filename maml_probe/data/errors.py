"""Error types and the messages that tell a user how to fix a missing or broken dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

#: Expected on-disk layout of each dataset, shown when it is missing.
LAYOUTS = {
    "omniglot": (
        "omniglot/images_background.zip and omniglot/images_evaluation.zip (the official\n"
        "archives), or the extracted folders omniglot/images_background/<Alphabet>/characterNN/*.png\n"
        "and omniglot/images_evaluation/<Alphabet>/characterNN/*.png"
    ),
    "miniimagenet": (
        "mini-imagenet/images/*.jpg with mini-imagenet/{train,val,test}.csv (Ravi & Larochelle\n"
        "layout, rows 'filename,label'), or mini-imagenet/mini-imagenet-cache-{train,val,test}.pkl"
    ),
    "cifarfs": (
        "cifar-fs/cifar-100-python.tar.gz (the official CIFAR-100 python archive), or the\n"
        "extracted folder cifar-fs/cifar-100-python/{train,test,meta}"
    ),
}


class IntegrityError(ValueError):
    """A source archive or download is truncated, corrupt, or fails its checksum."""


def install_command(dataset: str) -> str:
    """The CLI commands that install ``dataset``."""
    if dataset == "miniimagenet":
        return ("maml-probe data download miniimagenet --from PATH   "
                "(no official public host; see data/README.md for how to obtain it)")
    return (f"maml-probe data download {dataset}   "
            f"(or, with a copy you already have: maml-probe data download {dataset} --from PATH)")


def missing_dataset(dataset: str, searched: Sequence[Path], what: str = "") -> FileNotFoundError:
    """A ``FileNotFoundError`` naming the folders searched, the layout and the install command."""
    where = "\n".join(f"  {p}" for p in searched)
    detail = f" ({what})" if what else ""
    return FileNotFoundError(
        f"{dataset} dataset not found{detail}. Searched:\n{where}\n"
        f"Expected layout inside the data directory:\n{LAYOUTS[dataset]}\n"
        f"Install it with: {install_command(dataset)}\n"
        f"or point root= / $MAML_PROBE_DATA at the directory that holds it."
    )


def corrupt_source(path: Path, dataset: str, reason: object) -> IntegrityError:
    """An ``IntegrityError`` for a broken source file, with the re-install command."""
    return IntegrityError(
        f"{path} is corrupt or truncated ({reason}); nothing was cached. Delete it and "
        f"reinstall with: {install_command(dataset)}"
    )
