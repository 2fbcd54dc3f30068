"""``python -m lavis.zoo``: list, download, verify and locate the model zoo's weights.

    python -m lavis.zoo list [--json]                 every entry, its sources and what is cached
    python -m lavis.zoo download ARCH TYPE [--source auto|hf|url|pretrained] [--force] [--no-assets]
    python -m lavis.zoo download-url URL [--force]    any checkpoint URL into cache_root()/models/
    python -m lavis.zoo verify [--print]              re-hash cached files; --print: YAML pin lines
    python -m lavis.zoo path ARCH TYPE                 the cached weight file (exit 1 if not cached)
    python -m lavis.zoo table [--markdown]            the zoo table (docs/model_zoo.md)

Exit status: 0 on success, 1 on an error (not cached, download failed, a verify mismatch).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from lavis.common.errors import LavisError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lavis.zoo", description="The lavis model zoo.")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="every entry, its sources (preferred first) and whether it is cached")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    dl = sub.add_parser("download", help="fetch the weights (and tokenizer files) of ARCH TYPE into the caches")
    dl.add_argument("arch")
    dl.add_argument("model_type")
    dl.add_argument("--source", default="auto", choices=("auto", "hf", "url", "pretrained"),
                    help="auto: the Hub first, then the original URL (default); pretrained: the pre-trained weights")
    dl.add_argument("--force", action="store_true",
                    help="download again even if a good copy is cached (a damaged copy is fetched again anyway)")
    dl.add_argument("--no-assets", action="store_true",
                    help="only the weight file, not the tokenizer files the model's constructor needs")

    du = sub.add_parser("download-url", help="fetch any checkpoint URL into cache_root()/models/")
    du.add_argument("url")
    du.add_argument("--force", action="store_true",
                    help="download again even if a good copy is cached (a damaged copy is fetched again anyway)")

    vf = sub.add_parser("verify", help="re-hash every cached file against its pins or manifest record")
    vf.add_argument("--print", dest="print_pins", action="store_true",
                    help="also print the YAML lines that pin the files that check out")

    pa = sub.add_parser("path", help="the cached weight file of ARCH TYPE")
    pa.add_argument("arch")
    pa.add_argument("model_type")

    tb = sub.add_parser("table", help="the zoo table with parameter counts")
    tb.add_argument("--markdown", action="store_true", help="the Markdown of docs/model_zoo.md")
    return p


def _list(args: argparse.Namespace) -> int:
    from lavis.zoo import entries
    from lavis.zoo.report import format_json, format_list, list_rows

    rows = list_rows(entries())
    print(format_json(rows) if args.json else format_list(rows))
    return 0


def _download(args: argparse.Namespace) -> int:
    from lavis.zoo import download

    path = download(args.arch, args.model_type, args.source, force=args.force, assets=not args.no_assets)
    if path is None:
        print(f"{args.arch} {args.model_type} is random init: no weights to download", file=sys.stderr)
    else:
        print(path)
    return 0


def _download_url(args: argparse.Namespace) -> int:
    from lavis.zoo import resolve_location

    print(resolve_location(args.url, owner=args.url, force=args.force))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from lavis.zoo.verify import format_report, verify_cache

    checks = verify_cache()
    print(format_report(checks, print_pins=args.print_pins))
    return 1 if any(c.status == "mismatch" for c in checks) else 0


def _path(args: argparse.Namespace) -> int:
    from lavis.zoo import cached_path, get_entry

    entry = get_entry(args.arch, args.model_type)
    if entry.random_init:
        print(f"{entry.name} is random init: it has no weight file", file=sys.stderr)
        return 0
    hit = cached_path(entry)
    if hit is None:
        print(f"{entry.name}: the weights are not on this machine; fetch them with `{entry.download_command()}`",
              file=sys.stderr)
        return 1
    print(hit[1])
    return 0


def _table(args: argparse.Namespace) -> int:
    from lavis.zoo import entries
    from lavis.zoo.report import format_count, markdown_table, parameter_count

    if args.markdown:
        sys.stdout.write(markdown_table(entries()))
        return 0
    for e in entries():
        source = e.sources[0].describe() if e.sources else "random init"
        print(f"{e.arch:<16} {e.model_type:<20} {e.task or '-':<12} {format_count(parameter_count(e)):>8}  {source}")
    return 0


_COMMANDS = {"list": _list, "download": _download, "download-url": _download_url, "verify": _verify,
             "path": _path, "table": _table}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the zoo CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except (LavisError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
