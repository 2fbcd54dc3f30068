"""``model_zoo``: the printable table of every registered arch, its model types, where their
weights come from and whether they are on this machine (no network).

``from lavis.models import model_zoo`` re-exports it; ``python -m lavis.zoo list`` prints the
same information in more detail.
"""

from __future__ import annotations

from typing import Iterator

from lavis.zoo.entries import ZooEntry, entries


def source_label(entry: ZooEntry) -> str:
    """The preferred source of an entry (``+N fallback`` when it has more), or ``-`` for random init."""
    if entry.random_init:
        return "-"
    more = len(entry.sources) - 1
    return entry.sources[0].describe() + (f" (+{more} fallback)" if more else "")


def weights_status(entry: ZooEntry) -> str:
    """``random init``, ``cached (...)`` (which copies are on this machine) or ``not cached``."""
    from lavis.zoo.fetch import local_file

    if entry.random_init:
        return "random init"
    found = []
    for source in list(entry.sources) + ([entry.pretrained] if entry.pretrained else []):
        path = local_file(source)
        if path is not None:
            found.append(f"hf: {source.location}" if source.kind == "hf" else f"{source.role}: {path}")
    return f"cached ({'; '.join(found)})" if found else "not cached"


class ModelZoo:
    """Every registered arch, its model types, where their weights come from and whether they are
    on this machine.

    ``print(model_zoo)`` shows a table; ``model_zoo.rows()`` gives ``(arch, model_type, weights)``
    and ``model_zoo.entries()`` the :class:`lavis.zoo.ZooEntry` objects.
    """

    def entries(self) -> list[ZooEntry]:
        """Every model type of every registered arch (see :func:`lavis.zoo.entries`)."""
        return entries()

    def rows(self) -> list[tuple[str, str, str]]:
        """``(arch, model_type, weights status)`` per entry (see :func:`weights_status`)."""
        return [(e.arch, e.model_type, weights_status(e)) for e in self.entries()]

    def __str__(self) -> str:
        header = ("Architecture", "Model type", "Source", "Weights")
        rows = [header] + [(e.arch, e.model_type, source_label(e), weights_status(e)) for e in self.entries()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = []
        for i, row in enumerate(rows):
            lines.append("  ".join(f"{c:<{w}}" for c, w in zip(row[:3], widths)) + f"  {row[3]}")
            if i == 0:
                lines.append("=" * max(len(line) for line in lines))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return iter(self.rows())


model_zoo = ModelZoo()
