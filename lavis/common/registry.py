"""Registries that map the names used in YAML files to Python classes.

There is one :class:`Registry` per kind (models, processors, dataset builders, tasks, runners,
LR schedulers, ...) and a :data:`registry` facade with the familiar ``register_model`` /
``get_model_class`` / ``list_models`` names.

``import lavis`` must stay fast, so the built-in classes are not imported up front: each registry
knows the modules that define its built-in classes and imports them the first time a name is
looked up or listed. Registering a class from user code works as usual with the decorators.
"""

from __future__ import annotations

import importlib
import threading
from typing import Callable, Generic, Iterator, TypeVar

from lavis.common.errors import RegistrationError, UnknownNameError

T = TypeVar("T")


def init_arg_names(cls: type) -> set[str]:
    """Names of ``cls.__init__``'s named parameters: the keys a config block may pass to it."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _resolve(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """Names to classes (or functions) of one kind.

    Args:
        kind: what is registered, used in messages ("model", "task", ...).
        base: ``"module:Class"`` path of the class every entry must derive from, or ``None``.
            Given as a path so that defining the registry imports nothing heavy.
        builtin_modules: modules that register the built-in entries; imported on first lookup.
    """

    def __init__(self, kind: str, base: str | None = None, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self._base_path = base
        self._builtin_modules = list(builtin_modules)
        self._entries: dict[str, T] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- registration ---------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``name``."""
        if not isinstance(name, str) or not name:
            raise RegistrationError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def wrap(obj: T) -> T:
            self.add(name, obj)
            return obj

        return wrap

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``; a taken name or a wrong base class raises."""
        with self._lock:
            if self._base_path is not None:
                base = _resolve(self._base_path)
                if not (isinstance(obj, type) and issubclass(obj, base)):
                    raise RegistrationError(
                        f"cannot register {obj!r} as {self.kind} {name!r}: "
                        f"{self.kind} classes must derive from {base.__module__}.{base.__qualname__}"
                    )
            if name in self._entries and self._entries[name] is not obj:
                old = self._entries[name]
                raise RegistrationError(
                    f"{self.kind} name {name!r} is already taken by "
                    f"{getattr(old, '__module__', '?')}.{getattr(old, '__qualname__', old)}; pick another name"
                )
            self._entries[name] = obj

    def add_builtin_module(self, module: str) -> None:
        """Declare a module that registers entries of this kind, imported on first lookup."""
        with self._lock:
            self._builtin_modules.append(module)
            self._loaded = False

    # -- lookup ---------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            for module in list(self._builtin_modules):
                importlib.import_module(module)
            self._loaded = True

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name lists close matches and all names."""
        self._load_builtins()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, list(self._entries)) from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} loaded)"


class _RegistryFacade:
    """The ``registry`` object: one :class:`Registry` per kind, with the familiar method names."""

    def __init__(self) -> None:
        self.kinds: dict[str, Registry] = {}

    def add_kind(self, attr: str, registry: Registry) -> Registry:
        """Add a registry kind (rewards, quantizers, ... later); ``registry.<attr>`` returns it."""
        if attr in self.kinds:
            raise RegistrationError(f"registry kind {attr!r} already exists")
        self.kinds[attr] = registry
        setattr(self, attr, registry)
        return registry

    # models
    def register_model(self, name: str):
        return self.models.register(name)

    def get_model_class(self, name: str):
        return self.models.get(name)

    def list_models(self) -> list[str]:
        return self.models.names()

    # processors
    def register_processor(self, name: str):
        return self.processors.register(name)

    def get_processor_class(self, name: str):
        return self.processors.get(name)

    def list_processors(self) -> list[str]:
        return self.processors.names()

    # dataset builders
    def register_builder(self, name: str):
        return self.builders.register(name)

    def get_builder_class(self, name: str):
        return self.builders.get(name)

    def list_datasets(self) -> list[str]:
        return self.builders.names()

    # tasks
    def register_task(self, name: str):
        return self.tasks.register(name)

    def get_task_class(self, name: str):
        return self.tasks.get(name)

    def list_tasks(self) -> list[str]:
        return self.tasks.names()

    # runners
    def register_runner(self, name: str):
        return self.runners.register(name)

    def get_runner_class(self, name: str):
        return self.runners.get(name)

    def list_runners(self) -> list[str]:
        return self.runners.names()

    # LR schedulers
    def register_lr_scheduler(self, name: str):
        return self.lr_schedulers.register(name)

    def get_lr_scheduler_class(self, name: str):
        return self.lr_schedulers.get(name)

    def list_lr_schedulers(self) -> list[str]:
        return self.lr_schedulers.names()


registry = _RegistryFacade()
registry.add_kind(
    "models",
    Registry("model", "lavis.models.base_model:BaseModel", ("lavis.models.blip.blip_caption",)),
)
registry.add_kind(
    "processors",
    Registry(
        "processor",
        "lavis.processors.base_processor:BaseProcessor",
        ("lavis.processors.blip_processors",),
    ),
)
registry.add_kind(
    "builders",
    Registry(
        "dataset builder",
        "lavis.datasets.builders.base_builder:BaseDatasetBuilder",
        ("lavis.datasets.builders.caption_builders",),
    ),
)
registry.add_kind(
    "tasks",
    Registry("task", "lavis.tasks.base_task:BaseTask", ("lavis.tasks.captioning",)),
)
registry.add_kind(
    "runners",
    Registry(
        "runner",
        "lavis.runners.base_runner:BaseRunner",
        ("lavis.runners.runner_epoch", "lavis.runners.runner_iter"),
    ),
)
registry.add_kind(
    "lr_schedulers",
    Registry("LR scheduler", "lavis.common.optim:LRScheduler", ("lavis.common.optim",)),
)
