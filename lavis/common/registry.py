"""Registries that map the names used in YAML files to Python classes.

There is one :class:`Registry` per kind (models, processors, dataset builders, tasks, runners,
LR schedulers, ...) and a :data:`registry` facade with the familiar ``register_model`` /
``get_model_class`` / ``list_models`` names.

Nothing here knows the modules of the library. Each kind has *locations*: packages whose source
files are read (as text, never imported) for registration decorators such as
``@registry.register_model("blip_caption")``. That gives a table ``name -> module`` per kind, so
listing names imports nothing, and looking a name up imports only the module that registers it.
Adding a model means adding a file under ``lavis/models/`` (and its YAMLs); ``common/`` is not
edited. A user package registers its classes the usual way, by importing it, or adds itself as a
location with :meth:`Registry.add_location`.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

from lavis.common.errors import RegistrationError, UnknownNameError

if TYPE_CHECKING:
    from lavis.common.optim import LRScheduler
    from lavis.datasets.builders.base_builder import BaseDatasetBuilder
    from lavis.models.base_model import BaseModel
    from lavis.processors.base_processor import BaseProcessor
    from lavis.quantization.base import QuantMethod
    from lavis.runners.base_runner import BaseRunner
    from lavis.tasks.base_task import BaseTask

T = TypeVar("T")


def init_arg_names(cls: type) -> set[str]:
    """Names of ``cls.__init__``'s named parameters: the keys a config block may pass to it."""
    import inspect

    params = inspect.signature(getattr(cls, "__init__")).parameters
    return {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _package_files(package: str) -> list[tuple[str, Path]]:
    """``(module name, file)`` for every ``.py`` file of ``package`` (a module or a package),
    found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise RegistrationError(f"registry location {package!r} is not an importable module or package")
    if not spec.submodule_search_locations:  # a plain module
        return [(package, Path(spec.origin))] if spec.origin else []
    found = []
    for root in spec.submodule_search_locations:
        for path in sorted(Path(root).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if any(not p.isidentifier() for p in parts):
                continue
            found.append((".".join([package, *parts]), path))
    return found


def _registered_names(path: Path, decorator: str | None, attr: str | None) -> list[str]:
    """Names registered in the source file ``path`` by calls ``[<x>.]<decorator>("name")`` or
    ``registry.<attr>.register("name")`` (read with :mod:`ast`, so examples in docstrings and
    comments do not count)."""
    import ast

    text = path.read_text(encoding="utf-8")
    if not ((decorator and decorator in text) or (attr and f".{attr}.register" in text)):
        return []
    names = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        arg, func = node.args[0], node.func
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            continue
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        by_decorator = decorator is not None and called == decorator
        by_attr = (
            attr is not None and called == "register" and isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Attribute) and func.value.attr == attr
        )
        if by_decorator or by_attr:
            names.append(arg.value)
    return names


class Registry(Generic[T]):
    """Names to classes (or functions) of one kind.

    Args:
        kind: what is registered, used in messages ("model", "task", ...).
        base: ``"module:Class"`` path of the class every entry must derive from, or ``None``.
            Given as a path so that defining the registry imports nothing heavy.
        decorator: the facade method that registers this kind (``"register_model"``); with
            ``attr`` it is what the source scan looks for.
        attr: the facade attribute of this kind (``"models"``), for ``registry.models.register``.
        locations: packages (or modules) whose files are scanned for registrations.
        on_register: called as ``on_register(name, obj)`` when an entry is added.
    """

    def __init__(
        self,
        kind: str,
        base: str | None = None,
        *,
        decorator: str | None = None,
        attr: str | None = None,
        locations: tuple[str, ...] = (),
        on_register: Callable[[str, T], None] | None = None,
    ):
        self.kind = kind
        self._base_path = base
        self._locations = list(locations)
        self._decorator, self._attr = decorator, attr
        self._on_register = on_register
        self._entries: dict[str, T] = {}
        self._index: dict[str, str] | None = None  # name -> module, from the source scan
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
            if self._on_register is not None:
                self._on_register(name, obj)

    def add_location(self, package: str) -> None:
        """Scan ``package`` (a module or package name) for registrations of this kind, too."""
        with self._lock:
            self._locations.append(package)
            self._index = None

    # -- the source index -----------------------------------------------------------------------
    def index(self) -> dict[str, str]:
        """``{name: module}`` for every registration found in the locations' source files."""
        with self._lock:
            if self._index is None:
                index: dict[str, str] = {}
                for location in self._locations:
                    for module, path in _package_files(location):
                        for name in _registered_names(path, self._decorator, self._attr):
                            if name in index and index[name] != module:
                                raise RegistrationError(
                                    f"{self.kind} name {name!r} is registered in both {index[name]} and {module}"
                                )
                            index[name] = module
                self._index = index
            return self._index

    def import_all(self) -> None:
        """Import every module that registers an entry of this kind (for registry-wide tests)."""
        for module in sorted(set(self.index().values())):
            importlib.import_module(module)

    # -- lookup ---------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name lists close matches and all names."""
        if not isinstance(name, str):
            raise UnknownNameError(self.kind, str(name), self.names())
        if name not in self._entries:
            module = self.index().get(name)
            if module is not None:
                importlib.import_module(module)
                if name not in self._entries:
                    raise RegistrationError(
                        f"{module} was expected to register {self.kind} {name!r} but did not; "
                        f"check its @register decorator"
                    )
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        """Every registered name, sorted; imports nothing."""
        return sorted(set(self.index()) | set(self._entries))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self.index())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self.names())} names, {len(self._entries)} imported)"


def _configs_root() -> Path:
    return Path(__file__).resolve().parent.parent / "configs"


def shipped_types(section: str, name: str) -> dict[str, str]:
    """``{type: "configs/<section>/<name>/<type>.yaml"}`` for the YAML files shipped for ``name``
    (``section`` is ``models`` or ``datasets``); paths are relative to the package root."""
    folder = _configs_root() / section / name
    if not folder.is_dir():
        return {}
    return {p.stem: f"configs/{section}/{name}/{p.name}" for p in sorted(folder.glob("*.yaml"))}


def _attach_types(dict_attr: str, section: str) -> Callable[[str, Any], None]:
    """An ``on_register`` hook that gives a class without its own ``dict_attr`` the types found in
    ``configs/<section>/<name>/`` (``PRETRAINED_MODEL_CONFIG_DICT`` / ``DATASET_CONFIG_DICT``)."""

    def hook(name: str, cls: Any) -> None:
        if dict_attr not in vars(cls):
            setattr(cls, dict_attr, shipped_types(section, name))

    return hook


class _RegistryFacade:
    """The ``registry`` object: one typed :class:`Registry` per kind, with the familiar method names."""

    def __init__(self) -> None:
        self.models: Registry[type[BaseModel]] = Registry(
            "model", "lavis.models.base_model:BaseModel", decorator="register_model", attr="models",
            locations=("lavis.models",), on_register=_attach_types("PRETRAINED_MODEL_CONFIG_DICT", "models"),
        )
        self.processors: Registry[type[BaseProcessor]] = Registry(
            "processor", "lavis.processors.base_processor:BaseProcessor", decorator="register_processor",
            attr="processors", locations=("lavis.processors",),
        )
        self.builders: Registry[type[BaseDatasetBuilder]] = Registry(
            "dataset builder", "lavis.datasets.builders.base_builder:BaseDatasetBuilder",
            decorator="register_builder", attr="builders", locations=("lavis.datasets.builders",),
            on_register=_attach_types("DATASET_CONFIG_DICT", "datasets"),
        )
        self.tasks: Registry[type[BaseTask]] = Registry(
            "task", "lavis.tasks.base_task:BaseTask", decorator="register_task", attr="tasks",
            locations=("lavis.tasks",),
        )
        self.runners: Registry[type[BaseRunner]] = Registry(
            "runner", "lavis.runners.base_runner:BaseRunner", decorator="register_runner", attr="runners",
            locations=("lavis.runners",),
        )
        self.lr_schedulers: Registry[type[LRScheduler]] = Registry(
            "LR scheduler", "lavis.common.optim:LRScheduler", decorator="register_lr_scheduler",
            attr="lr_schedulers", locations=("lavis.common.optim",),
        )
        self.rewards: Registry[Callable[..., Any]] = Registry(
            "reward", None, decorator="register_reward", attr="rewards", locations=("lavis.rewards",),
        )
        self.quantizers: Registry[type[QuantMethod]] = Registry(
            "quantization method", "lavis.quantization.base:QuantMethod", decorator="register_quantizer",
            attr="quantizers", locations=("lavis.quantization",),
        )
        self.kinds: dict[str, Registry[Any]] = {
            "models": self.models,
            "processors": self.processors,
            "builders": self.builders,
            "tasks": self.tasks,
            "runners": self.runners,
            "lr_schedulers": self.lr_schedulers,
            "rewards": self.rewards,
            "quantizers": self.quantizers,
        }

    def add_kind(self, attr: str, registry: Registry[Any]) -> Registry[Any]:
        """Add a registry kind (rewards, quantizers, ... later); ``registry.<attr>`` returns it."""
        if attr in self.kinds or hasattr(self, attr):
            raise RegistrationError(f"registry kind {attr!r} already exists")
        self.kinds[attr] = registry
        setattr(self, attr, registry)
        return registry

    # models
    def register_model(self, name: str) -> Callable[[type[BaseModel]], type[BaseModel]]:
        return self.models.register(name)

    def get_model_class(self, name: str) -> type[BaseModel]:
        return self.models.get(name)

    def list_models(self) -> list[str]:
        return self.models.names()

    def model_types(self, name: str) -> list[str]:
        """The model types of arch ``name`` from its shipped YAML files; imports nothing."""
        if name not in self.models:
            self.models.get(name)  # raises with the close matches
        return sorted(shipped_types("models", name))

    # processors
    def register_processor(self, name: str) -> Callable[[type[BaseProcessor]], type[BaseProcessor]]:
        return self.processors.register(name)

    def get_processor_class(self, name: str) -> type[BaseProcessor]:
        return self.processors.get(name)

    def list_processors(self) -> list[str]:
        return self.processors.names()

    # dataset builders
    def register_builder(self, name: str) -> Callable[[type[BaseDatasetBuilder]], type[BaseDatasetBuilder]]:
        return self.builders.register(name)

    def get_builder_class(self, name: str) -> type[BaseDatasetBuilder]:
        return self.builders.get(name)

    def list_datasets(self) -> list[str]:
        return self.builders.names()

    # tasks
    def register_task(self, name: str) -> Callable[[type[BaseTask]], type[BaseTask]]:
        return self.tasks.register(name)

    def get_task_class(self, name: str) -> type[BaseTask]:
        return self.tasks.get(name)

    def list_tasks(self) -> list[str]:
        return self.tasks.names()

    # runners
    def register_runner(self, name: str) -> Callable[[type[BaseRunner]], type[BaseRunner]]:
        return self.runners.register(name)

    def get_runner_class(self, name: str) -> type[BaseRunner]:
        return self.runners.get(name)

    def list_runners(self) -> list[str]:
        return self.runners.names()

    # LR schedulers
    def register_lr_scheduler(self, name: str) -> Callable[[type[LRScheduler]], type[LRScheduler]]:
        return self.lr_schedulers.register(name)

    def get_lr_scheduler_class(self, name: str) -> type[LRScheduler]:
        return self.lr_schedulers.get(name)

    def list_lr_schedulers(self) -> list[str]:
        return self.lr_schedulers.names()

    # reward functions (RL post-training)
    def register_reward(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.rewards.register(name)

    def get_reward(self, name: str) -> Callable[..., Any]:
        return self.rewards.get(name)

    def list_rewards(self) -> list[str]:
        return self.rewards.names()

    # quantization methods (post-training quantization)
    def register_quantizer(self, name: str) -> Callable[[type[QuantMethod]], type[QuantMethod]]:
        return self.quantizers.register(name)

    def get_quantizer_class(self, name: str) -> type[QuantMethod]:
        return self.quantizers.get(name)

    def list_quantizers(self) -> list[str]:
        return self.quantizers.names()


registry = _RegistryFacade()
