"""Records: classes of named fields with ``__init__``, ``==``, ``hash`` and ``repr``.

The client's modules use them instead of :mod:`dataclasses`, because a dataclass compiles
five or six small functions when its module is imported: about 1 ms a class, 30-45 ms of
a ``store`` command's start-up over its 25 classes (docs/performance.md, F). A record
compiles one function, its ``__init__``; equality, hashing and ``repr`` are shared
functions that read the class's field names. Type checkers see records as dataclasses
(``dataclass_transform``), so the generated ``__init__`` is checked like one.

Every annotation in the class body is a field, in order; a value in the class body is its
default, and :func:`field` gives a default made anew for each record (a list, a dict).
``__post_init__``, when the class has one, runs at the end of ``__init__``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

T = TypeVar("T")

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # only type checkers read it, and they know it from typing_extensions' stubs

    def dataclass_transform(**_: object) -> Callable[[T], T]:
        return lambda decorated: decorated


_NO_DEFAULT = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is ``default_factory()``, called for each new record."""
    return cast(T, _Factory(default_factory))


class FrozenRecordError(AttributeError):
    """A field of a frozen record was set or deleted."""


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Make ``cls`` a record; ``frozen=True`` refuses changes after ``__init__`` (and
    makes it hashable, by its fields)."""

    def make(cls: type[T]) -> type[T]:
        # The class's own annotations (not inherited ones); vars() rather than
        # inspect.get_annotations, whose module costs 10 ms to import. Where annotations
        # are made on first use (Python 3.14 without the __future__ import), reading the
        # attribute makes them.
        annotations: dict[str, Any] = (vars(cls).get("__annotations__")
                                       or getattr(cls, "__annotations__", {}))
        names = tuple(name for name, annotation in annotations.items()
                      if not str(annotation).startswith("ClassVar"))
        methods: dict[str, Any] = {"__init__": _init(cls, names, frozen), "__repr__": _repr,
                                   "__eq__": _eq, "__hash__": _hash if frozen else None,
                                   "__record_fields__": names}
        if frozen:
            methods.update(__setattr__=_refuse, __delattr__=_refuse)
        for name, method in methods.items():
            setattr(cls, name, method)
        return cls

    return make if cls is None else make(cls)


def replace(item: T, /, **changes: Any) -> T:
    """A copy of the record ``item`` with some fields changed (``__post_init__`` runs again)."""
    names: tuple[str, ...] = vars(type(item))["__record_fields__"]
    values = {name: getattr(item, name) for name in names}
    values.update(changes)
    return type(item)(**values)


def _init(cls: type, names: tuple[str, ...], frozen: bool) -> Callable[..., None]:
    # One function compiled per class: as fast to call as the one dataclasses writes.
    namespace: dict[str, Any] = {"_MISSING": _NO_DEFAULT, "_set": object.__setattr__}
    params, lines = [], []
    for name in names:
        default = cls.__dict__.get(name, _NO_DEFAULT)
        if isinstance(default, _Factory):
            namespace[f"_make_{name}"] = default.make
            params.append(f"{name}=_MISSING")
            lines.append(f"if {name} is _MISSING: {name} = _make_{name}()")
            delattr(cls, name)
        elif default is not _NO_DEFAULT:
            namespace[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
        else:
            params.append(name)
        lines.append(f"_set(self, {name!r}, {name})" if frozen else f"self.{name} = {name}")
    if hasattr(cls, "__post_init__"):
        lines.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n " + "\n ".join(lines or ["pass"])
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return cast(Callable[..., None], init)


def _values(item: Any) -> tuple[Any, ...]:
    return tuple(getattr(item, name) for name in item.__record_fields__)


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_fields__)
    return f"{type(self).__qualname__}({fields})"


def _refuse(self: Any, name: str, value: object = None) -> None:
    raise FrozenRecordError(f"cannot change {name!r} of a frozen {type(self).__name__}")
