"""Exceptions raised by lavis. Every message says what went wrong and how to fix it."""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence


class LavisError(Exception):
    """Base class of every error lavis raises on purpose."""


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Names in ``choices`` that look like ``name`` (case-insensitive), best first."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def describe_unknown(what: str, name: str, choices: Sequence[str]) -> str:
    """One sentence for an unknown name: the close matches first, then every valid name."""
    msg = f"unknown {what} {name!r}"
    hits = close_matches(str(name), choices)
    if hits:
        msg += f"; did you mean {' or '.join(repr(h) for h in hits)}?"
    elif not msg.endswith("."):
        msg += "."
    msg += f" Registered {what}s: {', '.join(sorted(choices)) or '(none)'}"
    return msg


class UnknownNameError(LavisError, KeyError):
    """A name that is not in a registry (or another closed set of choices)."""

    def __init__(self, what: str, name: str, choices: Sequence[str]):
        self.what, self.name, self.choices = what, name, sorted(choices)
        self.message = describe_unknown(what, name, choices)
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class RegistrationError(LavisError):
    """A class registered under a taken name, or of the wrong base class."""


class ConfigError(LavisError):
    """One or more problems in a configuration; ``problems`` lists each as ``dotted.key: what``."""

    def __init__(self, problems: Sequence[str], source: str | None = None):
        self.problems = list(problems)
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


class CheckpointError(LavisError):
    """A checkpoint that is missing, corrupt, unsafe or does not fit the model."""


class TrainingError(LavisError):
    """Training cannot continue (for example a NaN loss)."""
