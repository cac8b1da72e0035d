"""Files that are never half-written, and the run folder that owns its ``record.json``.

Every file the package writes (checkpoints, CSVs, JSON, figures, dataset caches) goes through
:func:`atomic_write`: a temporary file in the target's folder, flushed, then renamed over the
target, so a crash leaves the old file or the new one, never a torn one. New files get the
permissions of the user's umask (readable by colleagues on a shared machine, as files written by
any other tool), not the private mode of a bare temporary file.

:class:`RunDir` is the one owner of a run folder (``runs/<experiment>/<name>/``): its tables,
figures and ``record.json`` (what ran, where, with which code and how it ended).
"""
from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["RunBusyError", "RunDir", "atomic_write", "git_state", "pid_alive", "write_csv_atomic",
           "write_json_atomic", "write_text_atomic"]


class RunBusyError(RuntimeError):
    """Another live process is writing into the run folder (see :meth:`RunDir.lock`)."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine.

    Args:
        pid: a process id.

    Returns:
        ``True`` if the process exists (also when it belongs to another user).
    """
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


def now_iso() -> str:
    """The local time as ``YYYY-MM-DDTHH:MM:SS+zzzz`` (the format of ``record.json``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = False,
                 sync: bool = False) -> Path:
    """Write ``path`` through ``write(file)`` on a temporary file, then rename it into place.

    Args:
        path: the file to create or replace; its folder is created when missing.
        write: called once with the open temporary file.
        binary: open the temporary file in binary mode.
        sync: ``fsync`` before the rename (checkpoints: survive a power cut, not only a crash).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text))


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (unknown types as ``str``) to ``path`` atomically."""
    return atomic_write(path, lambda f: json.dump(obj, f, indent=2, default=str))


def write_csv_atomic(df: Any, path: str | os.PathLike) -> Path:
    """Write the DataFrame ``df`` to ``path`` as CSV (no index) atomically."""
    return atomic_write(path, lambda f: df.to_csv(f, index=False))


def git_state(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` of the package's checkout."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                 timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit.strip() if commit else None,
            "git_dirty": bool(status.strip()) if status is not None else None}


class RunDir:
    """One run folder: ``record.json``, tidy tables as CSV and figures as PNG and SVG.

    ``record.json`` holds what identifies and describes the run (experiment, scale, parameters,
    status, device, wall time) plus provenance (package version, git commit and whether the tree
    was dirty, torch and Python versions, host, time of the last update). Every write goes
    through :meth:`update_record`, which merges fields into the record and rewrites it atomically.

    Args:
        path: the folder (created on the first write).
    """

    RECORD = "record.json"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def record_path(self) -> Path:
        """Path of ``record.json``."""
        return self.path / self.RECORD

    def read_record(self) -> dict[str, Any]:
        """The record, ``{}`` when none was written.

        Raises:
            ValueError: the file exists but is not a JSON object (the message names the file).
        """
        if not self.record_path.exists():
            return {}
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.record_path} is not readable JSON ({exc}); delete or fix "
                             f"that file") from None
        if not isinstance(record, dict):
            raise ValueError(f"{self.record_path} does not hold a JSON object; delete or fix it")
        return record

    @functools.cached_property
    def provenance(self) -> dict[str, Any]:
        """Package, git, torch and Python versions and host, read once per :class:`RunDir`
        (the code a run started with; a heartbeat does not start ``git`` again)."""
        import torch

        from ._version import __version__

        return {"package_version": __version__, **git_state(), "torch_version": torch.__version__,
                "python": platform.python_version(), "host": platform.node()}

    def update_record(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` and the provenance into ``record.json``; returns the new record."""
        record = self.read_record()
        record.update({**self.provenance, "updated": now_iso()})
        record.update(fields)
        write_json_atomic(record, self.record_path)
        return record

    def save_tables(self, tables: Mapping[str, Any]) -> list[Path]:
        """Write each DataFrame of ``tables`` to ``<name>.csv``; returns the paths."""
        return [write_csv_atomic(df, self.path / f"{name}.csv") for name, df in tables.items()]

    def save_figure(self, name: str, fig: Any) -> list[Path]:
        """Save a matplotlib figure as ``figures/<name>.png`` and ``.svg`` (atomically)."""
        out = []
        for ext in ("png", "svg"):
            out.append(atomic_write(self.path / "figures" / f"{name}.{ext}",
                                    lambda f, ext=ext: fig.savefig(f, format=ext, dpi=120,
                                                                   bbox_inches="tight"),
                                    binary=True))
        return out

    # -- a lock against two runs writing into one folder ---------------------------------------

    LOCK = "run.lock"

    @property
    def lock_path(self) -> Path:
        """Path of the lock file that a run holds while it writes into the folder."""
        return self.path / self.LOCK

    def lock_holder(self) -> dict[str, Any] | None:
        """``{"pid", "host", "started"}`` of the process holding the lock, ``None`` when free.

        An unreadable lock file (a process killed while writing it) reads as ``{}``.
        """
        try:
            text = self.lock_path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            holder = json.loads(text)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def lock_is_stale(self, holder: Mapping[str, Any]) -> bool:
        """Whether the lock of ``holder`` belongs to a process that is gone.

        Only a process on this machine can be checked; a lock from another host counts as live.
        """
        if not holder.get("pid"):  # unreadable: stale unless its writer may still be at work
            try:
                return time.time() - self.lock_path.stat().st_mtime > 10
            except OSError:
                return True
        return holder.get("host") == platform.node() and not pid_alive(holder["pid"])

    def check_free(self) -> dict[str, Any] | None:
        """Refuse a folder that a live run holds; returns the holder of a stale lock, if any.

        Returns:
            ``None`` when nobody holds the lock, else the dead holder (whose lock may be taken).

        Raises:
            RunBusyError: a live process, or one on another host, holds the lock.
        """
        holder = self.lock_holder()
        if holder is not None and not self.lock_is_stale(holder):
            raise RunBusyError(
                f"{self.path} is in use by another run (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}); wait for it to end, "
                f"or if that process is gone, delete {self.lock_path}")
        return holder

    def _try_lock(self) -> bool:
        try:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": platform.node(), "started": now_iso()}, f)
        return True

    @contextmanager
    def lock(self) -> Iterator[dict[str, Any] | None]:
        """Hold the folder's lock for the duration of a ``with`` block.

        A lock left by a process that died on this machine is taken over.

        Yields:
            The holder of the stale lock that was taken over, else ``None``.

        Raises:
            RunBusyError: a live process (or one on another host) holds the lock; the message
                names it and the lock file to delete if that process is known to be gone.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        taken_over = None
        if not self._try_lock():
            holder = self.check_free() or {}
            self.lock_path.unlink(missing_ok=True)
            if not self._try_lock():
                raise RunBusyError(f"{self.path} was claimed by another run just now; try again")
            taken_over = holder
        try:
            yield taken_over
        finally:
            self.lock_path.unlink(missing_ok=True)

    # -- a record that cannot be read ------------------------------------------------------------

    def set_aside_corrupt_record(self) -> Path | None:
        """Rename an unreadable ``record.json`` to ``record.json.corrupt``; returns its new path.

        Returns:
            The new path, or ``None`` when the record reads fine (or does not exist).
        """
        try:
            self.read_record()
        except ValueError:
            target = self.record_path.with_name(self.RECORD + ".corrupt")
            os.replace(self.record_path, target)
            return target
        return None

    # -- new outputs written beside the old ones, swapped in on success --------------------------

    STAGING = ".staging"
    FAILED = "failed-attempt"

    @property
    def staging_path(self) -> Path:
        """Folder where a run's new outputs are written before they replace the old ones."""
        return self.path / self.STAGING

    @property
    def failed_path(self) -> Path:
        """Folder holding the outputs of the last attempt that failed (for its traceback)."""
        return self.path / self.FAILED

    def begin_staging(self) -> Path:
        """An empty staging folder (a leftover of an interrupted attempt is removed)."""
        shutil.rmtree(self.staging_path, ignore_errors=True)
        self.staging_path.mkdir(parents=True)
        return self.staging_path

    def commit_staging(self) -> list[Path]:
        """Move every staged file over its namesake in the run folder; returns the new paths.

        Files of the run folder that the new attempt did not write are kept; the folder of an
        earlier failed attempt is removed, since the run now has good outputs.
        """
        moved = []
        for src in sorted(p for p in self.staging_path.rglob("*") if p.is_file()):
            dst = self.path / src.relative_to(self.staging_path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            moved.append(dst)
        shutil.rmtree(self.staging_path, ignore_errors=True)
        shutil.rmtree(self.failed_path, ignore_errors=True)
        return moved

    def keep_failed_staging(self) -> Path:
        """Rename the staging folder to :attr:`failed_path` (replacing an older one)."""
        shutil.rmtree(self.failed_path, ignore_errors=True)
        if self.staging_path.exists():
            os.replace(self.staging_path, self.failed_path)
        else:
            self.failed_path.mkdir(parents=True)
        return self.failed_path

    def has_outputs(self) -> bool:
        """Whether the folder holds outputs of a finished attempt (a table or a figure)."""
        return any(self.path.glob("*.csv")) or any(self.path.glob("figures/*"))
