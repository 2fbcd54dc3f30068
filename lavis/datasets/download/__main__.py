"""``python -m lavis.datasets.download NAME... [--root DIR] [--only KIND] [--keep-archives] [--list]``.

Exit status: 0 when every named data set is complete, 3 when one needs a manual step (and nothing
failed), 1 when a step failed, 2 for a usage error (unknown data set or option).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lavis.common.errors import LavisError
from lavis.datasets.download.api import ONLY_CHOICES, data_root, download_dataset, list_lines, markdown_tables
from lavis.datasets.download.catalog import dataset_names, get_spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lavis.datasets.download",
        description="Download language-vision data sets into the lavis cache, laid out where the builders look. "
                    "Resumable, verified and idempotent: run it again to finish or check a download.",
        epilog="Data sets: " + ", ".join(dataset_names()) + ". Environment: LAVIS_CACHE_HOME (data root), "
               "LAVIS_MIRROR (fetch https://host/path from <mirror>/host/path), LAVIS_OFFLINE=1 (never use the "
               "network). Exit status: 0 complete, 3 manual step needed, 1 failed, 2 usage error.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="data sets to download (see --list)")
    parser.add_argument("--root", default=None,
                        help="data root (default: the lavis cache root, $LAVIS_CACHE_HOME or ~/.cache/lavis); "
                             "used as the cache root for this run (its manifest.json goes there). Builders resolve "
                             "relative storage paths against the cache root: train with LAVIS_CACHE_HOME=ROOT")
    parser.add_argument("--only", choices=ONLY_CHOICES, default=None,
                        help="fetch only these parts ('images' also selects videos)")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep downloaded archives after extracting them (default: remove them)")
    parser.add_argument("--list", action="store_true",
                        help="list every data set (or the named ones), its parts, published sizes and what is present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--markdown", action="store_true", help=argparse.SUPPRESS)  # docs/datasets.md tables
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_tables())
        return 0
    if args.root:  # the data root is this run's cache root: its manifest.json goes there too
        os.environ["LAVIS_CACHE_HOME"] = str(data_root(args.root))
    try:
        names = [get_spec(n).name for n in args.names]
    except LavisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(list_lines(names or None, args.root)))
        return 0
    if not names:
        parser.print_usage(sys.stderr)
        print("error: name at least one data set, or pass --list to see them all", file=sys.stderr)
        return 2
    codes = []
    for name in dict.fromkeys(names):
        try:
            report = download_dataset(name, root=args.root, only=args.only, keep_archives=args.keep_archives,
                                      progress=not args.no_progress)
        except LavisError as exc:  # an --only that this data set does not have
            print(f"error: {exc}", file=sys.stderr)
            codes.append(2)
            continue
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
        codes.append(report.exit_code)
    return 1 if 1 in codes else 2 if 2 in codes else 3 if 3 in codes else 0


if __name__ == "__main__":
    sys.exit(main())
