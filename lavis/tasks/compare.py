"""Paired comparison of two evaluations of the same split: is a change beyond noise?

``evaluate.py`` and every training run write ``<output_dir>/result/<split>_epoch<e>.json`` with
``{"metrics": ..., "results": [{"id": ..., <per-item scores>}, ...]}``. Two such files of the same
split (say, before and after DPO) score the same items, so the fair test is a paired one: for
every per-item score they share (booleans such as ``correct`` and ``prefers_chosen``, numbers
such as a sampled answer's ``reward``) this counts the items that went up and down and gives the
exact two-sided sign test p-value (the chance of a split at least that uneven if up and down
were equally likely)::

    python -m lavis.tasks.compare before/result/test_epoch0.json after/result/test_epochbest.json
    python -m lavis.tasks.compare A.json B.json --by question_type   # also per question type
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PairedChange:
    """One per-item score compared over the items both evaluations have."""

    key: str
    group: str  # "" for all items, else "<by>=<value>"
    n: int
    before: float
    after: float
    up: int
    down: int

    @property
    def p_value(self) -> float:
        return sign_test(self.up, self.down)

    def line(self) -> str:
        where = f"{self.key}" + (f" [{self.group}]" if self.group else "")
        return (f"{where}: {self.before:.4f} -> {self.after:.4f}  (n={self.n}; up {self.up}, down {self.down}, "
                f"sign test p = {self.p_value:.2g})")


def sign_test(up: int, down: int) -> float:
    """Exact two-sided sign test: P(a split of ``up + down`` fair coin flips at least as uneven)."""
    n, k = up + down, min(up, down)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, j) for j in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def load_results(path: str | Path) -> dict[Any, Mapping[str, Any]]:
    """The per-item results of a result file, by ``id``; :class:`ValueError` with what is wrong for
    anything else (a file that cannot be read, is not JSON or has no per-item results)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e}); give a file written by evaluate.py or "
                         "train.py under <output_dir>/result/") from None
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    results = data.get("results") if isinstance(data, Mapping) else None
    if not isinstance(results, list) or not all(isinstance(r, Mapping) and "id" in r for r in results):
        raise ValueError(f"{path}: no per-item results (a list of records with an 'id' under 'results'); "
                         "give a file written by evaluate.py or train.py under <output_dir>/result/")
    return {r["id"]: r for r in results}


def _score(value: Any) -> float | None:
    """A per-item score: true/false or a float (integers are ids and counts, not scores)."""
    if isinstance(value, bool | float) and math.isfinite(float(value)):
        return float(value)
    return None


def compare(before: Mapping[Any, Mapping[str, Any]], after: Mapping[Any, Mapping[str, Any]],
            by: str | None = None) -> list[PairedChange]:
    """A :class:`PairedChange` for every numeric or boolean field the items of both have (``id``
    excepted), over all shared items and, with ``by``, per value of that field."""
    ids = [i for i in before if i in after]
    if not ids:
        raise ValueError("the two evaluations share no item ids: compare results of the same split")
    keys = sorted({k for i in ids for k in before[i] if k != "id" and k != by
                   and _score(before[i][k]) is not None and _score(after[i].get(k)) is not None})
    groups: list[tuple[str, list[Any]]] = [("", ids)]
    if by:
        values = sorted({str(before[i].get(by)) for i in ids if by in before[i]})
        groups += [(f"{by}={v}", [i for i in ids if str(before[i].get(by)) == v]) for v in values]
    out = []
    for key in keys:
        for group, members in groups:
            pairs = [(_score(before[i].get(key)), _score(after[i].get(key))) for i in members]
            kept = [(a, b) for a, b in pairs if a is not None and b is not None]
            if not kept:
                continue
            out.append(PairedChange(key, group, len(kept), sum(a for a, _ in kept) / len(kept),
                                    sum(b for _, b in kept) / len(kept), sum(b > a for a, b in kept),
                                    sum(b < a for a, b in kept)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lavis.tasks.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("before", help="result file of the first evaluation (<output_dir>/result/<split>_epoch<e>.json)")
    p.add_argument("after", help="result file of the second evaluation, same split")
    p.add_argument("--by", default=None, help="also compare per value of this field (e.g. question_type)")
    args = p.parse_args(argv)
    try:
        before, after = load_results(args.before), load_results(args.after)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    try:
        changes = compare(before, after, args.by)
    except ValueError as e:
        raise SystemExit(f"{args.before} and {args.after}: {e}") from None
    if not changes:
        raise SystemExit("no per-item score (a number or true/false) is in both files")
    missing = len(set(before) ^ set(after))
    if missing:
        print(f"note: {missing} item(s) are in only one of the files and are left out")
    for change in changes:
        print(change.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
