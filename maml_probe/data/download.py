"""Downloaders and installers: fetch the official archives, or install a copy you have.

``fetch`` streams a URL into ``<file>.part`` with a tqdm progress bar and resumes an existing
``.part`` with an HTTP ``Range`` request (a server that ignores the range restarts from 0).
It then checks, in order: the byte count against ``Content-Length``; the md5/sha256 if one is
known; the archive's integrity (``zipfile.testzip`` for zips, a full read for tarballs). Only
a file that passes all checks is renamed (``os.replace``) to its final name. A download that
stops early keeps its ``.part`` (a prefix of the file) so that rerunning resumes it; a
checksum or integrity failure deletes the ``.part``. Nothing is ever cached from a file that
failed a check.

The official sources and their checksums are the ``remotes`` of each dataset's
:class:`~maml_probe.data.spec.DatasetSpec` (modules in :mod:`maml_probe.data.specs`); a dataset
without public host (mini-ImageNet) says how to obtain it in ``manual_download``.

``install_from_path`` copies (or symlinks) an archive or folder the user already has into
``<data dir>/<dataset>/`` after the same integrity checks; a checksum is checked only when
given, because re-packed copies (such as the project's shared Omniglot zips) are valid
archives that do not match the official checksums.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

from tqdm.auto import tqdm

from .errors import IntegrityError
from .locations import dataset_dir
from .registry import get_spec
from .spec import Remote

__all__ = ["Remote", "file_digests", "check_archive", "verify", "fetch", "download_dataset",
           "install_from_path", "official_checksum_matches"]


def file_digests(path: Path, chunk_size: int = 1 << 20) -> dict[str, str]:
    """md5 and sha256 hex digests of a file, in one pass."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def check_archive(path: Path, name: str | None = None) -> None:
    """``IntegrityError`` if a zip or tarball is truncated or corrupt (other files: no check).

    The kind is read from ``name`` (default: the file's name), so a ``.part`` can be checked.
    """
    name = (name or path.name).lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise IntegrityError(f"{path}: member {bad} fails its CRC check")
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path) as tf:
                for member in tf:
                    f = tf.extractfile(member) if member.isfile() else None
                    while f is not None and f.read(1 << 20):
                        pass
    except IntegrityError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise IntegrityError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc})") from exc


def verify(path: Path, md5: str | None = None, sha256: str | None = None,
           name: str | None = None) -> None:
    """Check the given checksums, then the archive integrity; ``IntegrityError`` on failure."""
    if md5 or sha256:
        got = file_digests(path)
        for algo, want in (("md5", md5), ("sha256", sha256)):
            if want and got[algo] != want.lower():
                raise IntegrityError(f"{name or path.name}: {algo} {got[algo]} does not match "
                                     f"the expected {want.lower()}")
    check_archive(path, name)


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "maml_probe-downloader"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def fetch(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
          progress: bool = True, timeout: float = 60.0, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest`` resumably and verified (see module docstring).

    An existing ``dest`` is verified and kept. Raises ``IntegrityError`` (a ``ValueError``)
    for a short, oversized, corrupt or mismatching download and ``ConnectionError`` when the
    server cannot be reached.
    """
    dest = Path(dest)
    if dest.exists():
        try:
            verify(dest, md5, sha256)
        except IntegrityError as exc:
            raise IntegrityError(f"{exc}; the existing {dest} is bad: delete it and run the "
                                 f"command again") from exc
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    total: int | None = None
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and offset):  # 416: the .part already holds the whole file
            raise ConnectionError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
        resp, total = None, offset
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"could not reach {url} ({exc}); check the network, or install a "
                              f"copy you have with --from PATH") from exc
    if resp is not None:
        with resp:
            resumed = offset > 0 and resp.status == 206 and \
                resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
            offset = offset if resumed else 0
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(part, "ab" if resumed else "wb") as f, \
                    tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=dest.name, disable=not progress) as bar:
                try:
                    while chunk := resp.read(chunk_size):
                        f.write(chunk)
                        bar.update(len(chunk))
                except (http.client.HTTPException, OSError):
                    pass  # connection dropped: the size check below reports it
    got = part.stat().st_size
    if total is not None and got < total:
        raise IntegrityError(f"download of {url} stopped after {got} of {total} bytes; the "
                             f"partial file {part} is kept: run the same command again to resume")
    try:
        if total is not None and got > total:
            raise IntegrityError(f"{part}: {got} bytes, more than the {total} announced")
        verify(part, md5, sha256, name=dest.name)
    except IntegrityError as exc:
        part.unlink(missing_ok=True)
        raise IntegrityError(f"{exc}; the download was deleted, nothing was installed or "
                             f"cached. Run the command again to download it afresh.") from exc
    os.replace(part, dest)
    return dest


def download_dataset(dataset: str, root: str | os.PathLike | None = None, *,
                     base_url: str | None = None,
                     checksums: Mapping[str, Mapping[str, str | None]] | None = None,
                     progress: bool = True, timeout: float = 60.0) -> list[Path]:
    """Download the official files of ``dataset`` into ``<data dir>/<dataset folder>/``.

    Args:
        dataset: A dataset read from disk with download sources (its spec's ``remotes``).
        root: The data directory (default ``$MAML_PROBE_DATA`` or ``<project>/data``).
        base_url: Replaces the host and folder of every file (a mirror).
        checksums: Maps a file name to ``{"md5": ..., "sha256": ...}`` replacing the official
            values (``None`` values mean: integrity check only).
        progress: Show a progress bar per file.
        timeout: Seconds to wait for the server.

    Returns:
        The installed files.

    Raises:
        FileNotFoundError: The dataset has no public host; the message says how to get it.
    """
    spec = get_spec(dataset, on_disk=True)
    if not spec.remotes:
        raise FileNotFoundError(spec.manual_download or f"{dataset} has no download source; "
                                f"install a copy with --from PATH")
    target = dataset_dir(dataset, root)
    out = []
    for remote in spec.remotes:
        url = f"{base_url.rstrip('/')}/{remote.filename}" if base_url else remote.url
        sums = dict(checksums[remote.filename]) if checksums and remote.filename in checksums \
            else {"md5": remote.md5, "sha256": remote.sha256}
        out.append(fetch(url, target / remote.filename, md5=sums.get("md5"),
                         sha256=sums.get("sha256"), progress=progress, timeout=timeout))
    return out


def _copy_file(src: Path, dest: Path, symlink: bool) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    if symlink:
        tmp.symlink_to(src.resolve())
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest


def _copy_tree(src: Path, dest: Path, symlink: bool) -> Path:
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists; remove it first to reinstall")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.exists():
        shutil.rmtree(tmp)
    if symlink:
        tmp.symlink_to(src.resolve(), target_is_directory=True)
    else:
        shutil.copytree(src, tmp)
    os.replace(tmp, dest)
    return dest


def install_from_path(dataset: str, path: str | os.PathLike, root: str | os.PathLike | None = None,
                      *, md5: str | None = None, sha256: str | None = None,
                      symlink: bool = False) -> list[Path]:
    """Install an archive or folder the user has into ``<data dir>/<dataset folder>/``.

    What is taken from ``path`` is the dataset spec's ``install_plan``. Archives are
    integrity-checked (and checksummed when ``md5``/``sha256`` is given) before anything is
    copied.

    Args:
        dataset: A dataset read from disk.
        path: The archive or folder to install (or a folder that holds it).
        root: The data directory (default ``$MAML_PROBE_DATA`` or ``<project>/data``).
        md5: Expected md5 of the archive(s), if known.
        sha256: Expected sha256 of the archive(s), if known.
        symlink: Link instead of copying.

    Returns:
        The installed paths.
    """
    spec = get_spec(dataset, on_disk=True)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--from path {path} does not exist")
    plan = spec.install_plan(path) if spec.install_plan else []
    if not plan:
        raise FileNotFoundError(f"{path} does not hold a {dataset} dataset in a known form. "
                                f"Expected (inside it, or it itself):\n{spec.layout}")
    for src, _ in plan:
        if src.is_file():
            verify(src, md5, sha256)
    target = dataset_dir(dataset, root)
    return [(_copy_tree if src.is_dir() else _copy_file)(src, target / name, symlink)
            for src, name in plan]


def official_checksum_matches(dataset: str, path: Path) -> bool | None:
    """Whether an installed file matches its official md5.

    Args:
        dataset: A dataset read from disk.
        path: An installed file.

    Returns:
        ``True``/``False``, or ``None`` when the file has no official checksum.
    """
    for remote in get_spec(dataset, on_disk=True).remotes:
        if remote.filename == path.name and remote.md5:
            return file_digests(path)["md5"] == remote.md5
    return None
