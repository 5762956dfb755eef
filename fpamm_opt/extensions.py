"""Model extensions named in a run specification: ``"module:callable"`` strings -> callables.

Role
----
A run specification may list extensions of the per-interval model (``[[extensions]]``, see
:mod:`fpamm_opt.spec`)::

    [[extensions]]
    function = "examples/zonal_limit.py:zonal_import_limit"   # or "package.module:callable"
    buses = [5, 10, 11, 12, 13]
    limit_mw = 20.0

Each entry names a callable and keyword arguments. :func:`resolve_extensions` imports the
callable and returns ``functools.partial(callable, **kwargs)``; the problem layer
(:func:`fpamm_opt.problem.build_model`) calls it as ``callable(model, net, **kwargs)`` after
the DC-OPF and allocation blocks exist. The mechanism then runs on top unchanged.

Targets
-------
``"package.module:attr"``
    Imported with :func:`importlib.import_module` (the module must be importable).
``"path/to/file.py:attr"``
    Loaded from the file (a relative path is resolved against the spec file's directory when
    the spec is loaded). ``attr`` may be dotted (``"mod:Class.build"``).

Everything that can go wrong (a malformed target, a missing module or file, an import error
inside it, a missing or non-callable attribute, keyword arguments the callable does not
accept) raises :class:`~fpamm_opt.errors.InputError` naming the entry, before any model is
built. This module imports no Pyomo (the user's module may).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import keyword
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpamm_opt.errors import InputError

__all__ = [
    "ExtensionTarget",
    "load_callable",
    "parse_target",
    "resolve_extension",
    "resolve_extensions",
]


@dataclass(frozen=True)
class ExtensionTarget:
    """A parsed ``"module:attr"`` / ``"file.py:attr"`` string."""

    module: str  #: dotted module name, or a file path when :attr:`is_file`
    attr: str  #: dotted attribute path inside the module
    is_file: bool

    def text(self) -> str:
        return f"{self.module}:{self.attr}"


def _dotted(text: str) -> bool:
    parts = text.split(".")
    return all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)


def _looks_like_file(module: str) -> bool:
    return module.lower().endswith(".py") or "/" in module or "\\" in module


def parse_target(text: Any, where: str = "extension") -> ExtensionTarget:
    """Split and check ``"module:attr"`` or ``"path/file.py:attr"`` (no import).

    Raises
    ------
    InputError
        Not a string, no ``:``, an empty side, or names that are not Python identifiers.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: expected 'module:callable' or 'file.py:callable', got {text!r}")
    s = text.strip()
    if any(ord(c) < 32 for c in s):
        raise InputError(f"{where}: {text!r} contains control characters")
    if ":" not in s:
        raise InputError(
            f"{where}: {text!r} has no ':' (expected 'module:callable' or 'file.py:callable')"
        )
    module, attr = s.rsplit(":", 1)
    module, attr = module.strip(), attr.strip()
    if not module or not attr:
        raise InputError(f"{where}: {text!r} has an empty module or callable name")
    if not _dotted(attr):
        raise InputError(f"{where}: {attr!r} in {text!r} is not a Python name")
    is_file = _looks_like_file(module)
    if not is_file and not _dotted(module):
        raise InputError(f"{where}: {module!r} in {text!r} is neither a module name nor a .py file")
    return ExtensionTarget(module, attr, is_file)


def _load_file_module(path: Path, where: str) -> Any:
    """Import a ``.py`` file once per resolved path (cached in ``sys.modules``)."""
    if not path.is_file():
        raise InputError(f"{where}: file {str(path)!r} not found")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode("utf-8")).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
    name = f"fpamm_extension_{stem}_{digest}"
    cached = sys.modules.get(name)
    if cached is not None:
        return cached
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise InputError(f"{where}: cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InputError(f"{where}: importing {str(path)!r} failed ({_describe(exc)})") from None
    return module


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def load_callable(
    target: str | ExtensionTarget, where: str = "extension", base_dir: Path | str | None = None
) -> Callable[..., Any]:
    """Import the callable a target names.

    Parameters
    ----------
    target
        ``"module:attr"`` or ``"file.py:attr"`` (or an :class:`ExtensionTarget`).
    where
        Prefix of error messages (``"extensions[0].function"``).
    base_dir
        Directory against which a relative file path is resolved (default: the current one).

    Raises
    ------
    InputError
        See the module docstring.
    """
    t = target if isinstance(target, ExtensionTarget) else parse_target(target, where)
    if t.is_file:
        p = Path(t.module)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        module = _load_file_module(p, where)
    else:
        try:
            module = importlib.import_module(t.module)
        except Exception as exc:
            raise InputError(
                f"{where}: cannot import module {t.module!r} ({_describe(exc)})"
            ) from None
    obj: Any = module
    for part in t.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(f"{where}: {t.module!r} has no attribute {t.attr!r}") from None
    if not callable(obj):
        raise InputError(f"{where}: {t.text()!r} is not callable (got {type(obj).__name__})")
    return obj


def _check_arguments(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> None:
    """The callable must accept ``(model, net, **kwargs)``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: checked at build time
        return
    try:
        sig.bind(None, None, **kwargs)
    except TypeError as exc:
        raise InputError(
            f"{where}: cannot be called as f(model, net, **{sorted(kwargs)}) ({exc})"
        ) from None


def _entry_parts(entry: Any, where: str) -> tuple[Any, dict[str, Any]]:
    if isinstance(entry, Mapping):
        data = dict(entry)
        if "function" not in data:
            raise InputError(f"{where}: missing key 'function'")
        return data.pop("function"), data
    function = getattr(entry, "function", None)
    kwargs = getattr(entry, "kwargs", None)
    if function is None or not isinstance(kwargs, Mapping):
        raise InputError(f"{where}: expected a table with a 'function' key, got {entry!r}")
    return function, dict(kwargs)


def resolve_extension(
    entry: Any, index: int = 0, base_dir: Path | str | None = None
) -> functools.partial[Any]:
    """One ``[[extensions]]`` entry -> ``functools.partial(callable, **kwargs)``.

    Parameters
    ----------
    entry
        A mapping ``{"function": "...", **kwargs}`` or an object with ``function`` and
        ``kwargs`` attributes (:class:`fpamm_opt.spec.ExtensionSpec`).
    index
        Position of the entry, used in error messages (``extensions[index]``).
    base_dir
        Directory against which a relative file path is resolved.
    """
    where = f"extensions[{index}]"
    function, kwargs = _entry_parts(entry, where)
    for key in kwargs:
        if not isinstance(key, str) or not key.isidentifier():
            raise InputError(f"{where}: argument name {key!r} is not a Python identifier")
    label = f"{where} ({function!r})" if isinstance(function, str) else where
    fn = load_callable(function, f"{where}.function", base_dir=base_dir)
    _check_arguments(fn, kwargs, label)
    return functools.partial(fn, **kwargs)


def resolve_extensions(
    entries: Iterable[Any], base_dir: Path | str | None = None
) -> tuple[functools.partial[Any], ...]:
    """Every entry of ``[[extensions]]``, in order (see :func:`resolve_extension`)."""
    return tuple(resolve_extension(e, i, base_dir) for i, e in enumerate(entries))
