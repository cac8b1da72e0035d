"""``maml-probe data ...``: download, install from a local copy, prepare caches, show status.

The lead wires ``add_data_parser`` / ``run_data_command`` into ``maml_probe.cli``;
``python -m maml_probe.data`` runs the same commands on its own (``main``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

from . import download as dl
from .errors import IntegrityError
from .locations import cache_dir, data_dir
from .registry import dataset_names, dataset_specs, get_spec

DESCRIPTION = ("Download, install and prepare the few-shot datasets. Data goes to --root "
               "(default $MAML_PROBE_DATA or <project>/data), caches to --cache-dir "
               "(default $MAML_PROBE_CACHE or <data dir>/cache).")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", metavar="DIR", help="data directory (default: $MAML_PROBE_DATA "
                   "or <project>/data)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache directory (default: "
                   "$MAML_PROBE_CACHE or <data dir>/cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def populate(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``download`` / ``prepare`` / ``info`` sub-commands to ``parser``.

    The dataset choices are the datasets read from disk that are registered now.

    Args:
        parser: The parser of ``maml-probe data`` (or of ``python -m maml_probe.data``).

    Returns:
        ``parser``.
    """
    names = dataset_names(on_disk=True)
    sub = parser.add_subparsers(dest="data_command", metavar="{download,prepare,info}")
    sub.required = True
    d = sub.add_parser("download", help="download a dataset (or install one with --from PATH)",
                       description="Download the official archives, verify them (size, "
                       "checksum, archive integrity) and build the cache. mini-ImageNet has "
                       "no official host: use --from PATH.")
    d.add_argument("dataset", choices=names)
    d.add_argument("--from", dest="from_path", metavar="PATH",
                   help="install an archive or folder you already have instead of downloading")
    d.add_argument("--md5", help="expected md5 of the --from archive")
    d.add_argument("--sha256", help="expected sha256 of the --from archive")
    d.add_argument("--symlink", action="store_true", help="with --from: link instead of copy")
    d.add_argument("--mirror", metavar="URL", help="download the same file names from this "
                   "base URL instead of the official host")
    d.add_argument("--no-checksum", action="store_true", help="skip the official checksum "
                   "(size and archive integrity are still checked)")
    d.add_argument("--no-prepare", action="store_true", help="do not build the cache")
    _common(d)
    p = sub.add_parser("prepare", help="build the cache of an installed dataset")
    p.add_argument("dataset", choices=(*names, "all"))
    _common(p)
    i = sub.add_parser("info", help="show where data and caches are and what is installed")
    _common(i)
    return parser


def add_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` on a top-level CLI's subparsers.

    Args:
        subparsers: The top-level CLI's subparsers.

    Returns:
        The ``data`` parser.
    """
    return populate(subparsers.add_parser("data", help="download and prepare datasets",
                                          description=DESCRIPTION))


def prepare(dataset: str, root: str | None, cache: str | None, progress: bool = True) -> list[str]:
    """Build (or check) the caches of ``dataset`` with its spec's ``prepare``.

    Args:
        dataset: A dataset read from disk.
        root: The data directory.
        cache: The cache directory.
        progress: Show progress bars.

    Returns:
        One line per cache: its shape and whether it was built or up to date.
    """
    spec = get_spec(dataset, on_disk=True)
    if spec.prepare is None:
        return [f"{dataset}: nothing to prepare"]
    lines = []
    start = time.perf_counter()
    for name, meta in spec.prepare(root, cache, progress):
        state = "up to date" if meta.get("cache_hit") else f"built in {meta['build_seconds']:.1f} s"
        if meta.get("cached") is False:
            state += " but not saved (the cache folder is not writable; set --cache-dir)"
        lines.append(f"{name}: {tuple(meta['shape'])} uint8, cache {state} "
                     f"({time.perf_counter() - start:.1f} s)")
        start = time.perf_counter()
    return lines


def _info(root: str | None, cache: str | None) -> None:
    print(f"data directory:  {data_dir(root)}")
    print(f"cache directory: {cache_dir(cache, root)}")
    for spec in dataset_specs(on_disk=True):
        try:
            print(f"  {spec.name}: installed ({', '.join(str(p) for p in spec.find_sources(root))})")
        except FileNotFoundError:
            print(f"  {spec.name}: not installed (maml-probe data download {spec.name}"
                  f"{'' if spec.remotes else ' --from PATH'})")
    for meta_file in sorted(cache_dir(cache, root).glob("*.json")):
        try:
            meta = json.loads(meta_file.read_text())
            print(f"  cache {meta_file.stem}: {tuple(meta['shape'])}, built {meta['built_at']}")
        except (ValueError, KeyError):
            print(f"  cache {meta_file.stem}: unreadable record")


def _download(args: argparse.Namespace) -> None:
    progress = not args.quiet
    if args.from_path:
        installed = dl.install_from_path(args.dataset, args.from_path, args.root, md5=args.md5,
                                         sha256=args.sha256, symlink=args.symlink)
        for p in installed:
            official = dl.official_checksum_matches(args.dataset, p) if p.is_file() else None
            note = {True: " (matches the official md5)",
                    False: " (archive intact; differs from the official md5, e.g. a re-packed copy)",
                    None: ""}[official]
            print(f"installed {p}{note}")
    else:
        remotes = get_spec(args.dataset, on_disk=True).remotes
        checksums = {r.filename: {} for r in remotes} if args.no_checksum else None
        for p in dl.download_dataset(args.dataset, args.root, base_url=args.mirror,
                                     checksums=checksums, progress=progress):
            print(f"downloaded and verified {p}")
    if not args.no_prepare:
        for line in prepare(args.dataset, args.root, args.cache_dir, progress):
            print(line)


def run_data_command(args: argparse.Namespace) -> int:
    """Run a parsed ``data`` command, printing errors to stderr.

    Args:
        args: The parsed command line.

    Returns:
        The exit status: 0 on success, 1 on an error.
    """
    try:
        if args.data_command == "download":
            _download(args)
        elif args.data_command == "prepare":
            names = dataset_names(on_disk=True) if args.dataset == "all" else (args.dataset,)
            for name in names:
                for line in prepare(name, args.root, args.cache_dir, not args.quiet):
                    print(line)
        else:
            _info(args.root, args.cache_dir)
    except (FileNotFoundError, FileExistsError, IntegrityError, ValueError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m maml_probe.data ...``.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = populate(argparse.ArgumentParser(prog="python -m maml_probe.data",
                                              description=DESCRIPTION))
    return run_data_command(parser.parse_args(argv))
