"""A working copy of the explorer notebook under ``runs/``, so exploring leaves git clean.

JupyterLab autosaves a notebook's outputs into its file. Opened in place, the committed
``notebooks/explore.ipynb`` would collect widget state and plots in git; the explorer is
therefore opened from a copy, ``runs/explore.ipynb`` (``runs/`` is not committed)::

    .venv/bin/maml-probe explore          # copies the notebook (once) and prints the command
    .venv/bin/jupyter lab runs/explore.ipynb

:func:`copy_notebook` makes the copy (outputs cleared, an existing copy kept unless
``overwrite``); :func:`lab_command` is the command that opens it.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from ..io import write_text_atomic
from ..runs import RUNS_ROOT

#: The committed explorer notebook of this checkout.
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore.ipynb"


def strip_outputs(notebook: dict) -> dict:
    """The notebook with every code cell's outputs and execution count cleared.

    Args:
        notebook: A notebook as parsed JSON (nbformat 4).

    Returns:
        The same dict, changed in place.
    """
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    notebook.get("metadata", {}).pop("widgets", None)
    return notebook


def default_copy() -> Path:
    """Where the working copy goes: ``<runs>/explore.ipynb``.

    Returns:
        The path (:data:`maml_probe.runs.RUNS_ROOT` ``/ "explore.ipynb"``).
    """
    return Path(RUNS_ROOT) / "explore.ipynb"


def copy_target(dest: str | Path | None = None) -> Path:
    """The file :func:`copy_notebook` writes for ``dest``.

    Args:
        dest: A notebook path, a folder (the copy is ``explore.ipynb`` inside), or ``None``
            (:func:`default_copy`).

    Returns:
        The notebook path.
    """
    dest = Path(dest).expanduser() if dest is not None else default_copy()
    return dest / "explore.ipynb" if dest.is_dir() or dest.suffix != ".ipynb" else dest


def copy_notebook(dest: str | Path | None = None, *, overwrite: bool = False,
                  source: str | Path | None = None) -> Path:
    """Copy the explorer notebook to a working location outside git (default ``runs/``).

    Args:
        dest: The copy (default :func:`default_copy`); a folder gets ``explore.ipynb`` inside.
        overwrite: Replace an existing copy with a fresh one (otherwise it is kept as it is, so
            your own cells and settings survive).
        source: The notebook to copy (default: this checkout's ``notebooks/explore.ipynb``).

    Returns:
        The path of the copy.

    Raises:
        FileNotFoundError: When the source notebook is missing (an install without the
            checkout's ``notebooks/``).
        ValueError: When ``dest`` is the source notebook itself.
    """
    src = Path(source) if source is not None else NOTEBOOK
    dest = copy_target(dest)
    if not src.is_file():
        raise FileNotFoundError(f"explorer notebook not found at {src} (it ships with the "
                                f"checkout's notebooks/ folder)")
    if dest.resolve() == src.resolve():
        raise ValueError(f"{dest} is the committed notebook itself; copy it elsewhere (runs/)")
    if dest.exists() and not overwrite:
        return dest
    notebook = strip_outputs(json.loads(src.read_text()))
    write_text_atomic(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", dest)
    return dest


def lab_command(path: str | Path) -> str:
    """The shell command that opens ``path`` in JupyterLab (this environment's ``jupyter``).

    Args:
        path: The notebook.

    Returns:
        E.g. ``.venv/bin/jupyter lab runs/explore.ipynb``.
    """
    jupyter = Path(sys.executable).parent / "jupyter"
    exe = str(jupyter) if jupyter.exists() else "jupyter"
    return f"{shlex.quote(exe)} lab {shlex.quote(str(path))}"
