"""Fingerprints: what a step's cache key is made of, besides its inputs.

A step's result depends on its code, its params and its inputs; the cache key hashes
all three, so this module answers "has the code changed?" and "are these the same
params?" with hashes that are stable across processes and machines.

**The code rule.** The code hash of a step covers its function and every function,
class and constant *of the user's own project* that the function reaches: names it
reads from its module's globals (``helper(x)``, ``THRESHOLD``, ``mymod.clean`` for an
imported project module), its closure cells and its default values, recursively. A
module belongs to the user's project when its file lives neither in the standard
library nor in a ``site-packages``/``dist-packages`` folder (so a project installed
with ``pip install -e`` counts, and ``__main__`` or a notebook always does); opsloop's
own modules never count. Library code is named (``numpy:mean``), not hashed:
upgrading a library does not invalidate the cache. Project code is named by its
qualified name without its module, so a script run as ``__main__`` and the same file
imported as a module share their cache.

What is hashed is the compiled code object (its bytecode, constants and names), not
the file's text: it is what actually runs, so a file edited on disk but not re-imported
cannot make the key lie, and comments, formatting, decorators, docstrings and line
moves do not count. Constants count by value when they are plain data (numbers,
strings, containers of them); other objects count by their type only - pass them as
params to make their value count. A new Python version compiles differently, so it
starts a new cache.

**Params** are canonicalised to JSON with type tags (so ``1``, ``1.0``, ``True`` and
``"1"`` differ, tuples differ from lists, and sets and dicts do not depend on their
order); a value JSON cannot hold (a DataFrame, a model) counts by the SHA-256 of its
serialised bytes (Parquet or cloudpickle, as outputs are stored).
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import enum
import functools
import hashlib
import inspect
import json
import math
import os
import site
import sys
import sysconfig
import types
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import Any

# Bump when the encoding below changes: every cache key changes with it.
FINGERPRINT_VERSION = 1

# Containers larger than this count by type and length only (a global list of a
# million ids should not make every cache check slow).
_MAX_ELEMENTS = 10_000

# Class attributes that describe the class rather than define its behaviour, or whose
# repr holds memory addresses.
_SKIP_CLASS_ATTRS = frozenset(
    {
        "__module__",
        "__dict__",
        "__weakref__",
        "__doc__",
        "__qualname__",
        "__annotations__",
        "__dataclass_fields__",
        "__dataclass_params__",
        "__match_args__",
        "__slots__",
        "__firstlineno__",
        "__static_attributes__",
        "__orig_bases__",
        "__parameters__",
        "_abc_impl",
    }
)


# -- whose code is it -------------------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    roots: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            roots.add(os.path.realpath(paths[key]))
    with contextlib.suppress(AttributeError):  # some virtualenv builds lack it
        roots.update(os.path.realpath(p) for p in site.getsitepackages())
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user_site, str):
        roots.add(os.path.realpath(user_site))
    return tuple(sorted(roots))


_LIBRARY_ROOTS = _library_roots()
_USER_MODULES: dict[str, bool] = {}


def is_user_module(name: str | None) -> bool:
    """Whether the module named ``name`` is part of the user's own project (see above).

    Example::

        >>> is_user_module("json"), is_user_module("__main__")
        (False, True)
    """
    if not name:
        return False
    known = _USER_MODULES.get(name)
    if known is not None:
        return known
    result = _classify(name)
    _USER_MODULES[name] = result
    return result


def _classify(name: str) -> bool:
    if name in ("__main__", "__mp_main__"):
        return True
    top = name.partition(".")[0]
    if top == "opsloop" or name in sys.builtin_module_names:
        return False
    module = sys.modules.get(name)
    if module is None:
        # Code whose module is not imported here arrived by value (in a worker): it
        # carries its code with it, and is the user's.
        return True
    file = getattr(module, "__file__", None)
    if not file:
        return False  # built-in, frozen or namespace: not project code
    path = os.path.realpath(file)
    parts = PurePath(path).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(path == root or path.startswith(root + os.sep) for root in _LIBRARY_ROOTS)


def _qualified(obj: Any) -> str:
    """A name for code or a type: ``module:qualname`` for library code; for project code
    only the qualified name, so that a module run as ``__main__`` and imported under its
    name (or moved) keeps its cache."""
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "?"
    if is_user_module(module):
        return str(qualname)
    return f"{module}:{qualname}"


# -- values -------------------------------------------------------------------------


class Unhashable(Exception):
    """A value that neither canonical JSON nor cloudpickle can hold."""


def canonical(value: Any, *, dump: Callable[[Any], bytes] | None = None) -> Any:
    """A JSON-able structure that equals another's exactly when the values are equal.

    ``dump`` serialises what JSON cannot hold; its bytes count by SHA-256. Without it,
    such values raise ``Unhashable``.

    Example::

        >>> canonical({"b": (1, 2.0), "a": {3}})
        {'a': {'$set': ['3']}, 'b': {'$tuple': [1, 2.0]}}
    """
    return _canon(value, dump, 0)


def _canon(value: Any, dump: Callable[[Any], bytes] | None, depth: int) -> Any:
    if depth > 50:
        raise Unhashable("nested more than 50 levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return value if type(value) is int else {"$int": str(int(value))}
    if isinstance(value, float) and not isinstance(value, enum.Enum):
        if math.isfinite(value):
            return value
        return {"$float": repr(value)}
    if isinstance(value, list):
        return [_canon(v, dump, depth + 1) for v in value]
    if isinstance(value, tuple):
        items = [_canon(v, dump, depth + 1) for v in value]
        if hasattr(value, "_fields"):  # a named tuple: its type counts too
            return {"$namedtuple": [_qualified(type(value)), items]}
        return {"$tuple": items}
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            return {k: _canon(value[k], dump, depth + 1) for k in sorted(value)}
        items = [
            (_dumps(_canon(k, dump, depth + 1)), _canon(v, dump, depth + 1))
            for k, v in value.items()
        ]
        return {"$dict": sorted(items, key=lambda kv: kv[0])}
    if isinstance(value, (set, frozenset)):
        return {"$set": sorted(_dumps(_canon(v, dump, depth + 1)) for v in value)}
    if isinstance(value, bytes):
        return {"$bytes": hashlib.sha256(value).hexdigest()}
    if isinstance(value, enum.Enum):
        return {"$enum": f"{_qualified(type(value))}.{value.name}"}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"$" + type(value).__name__: value.isoformat()}
    if isinstance(value, Path) and value.exists():
        # A path given to a step counts by what it holds (see filehash).
        from opsloop.pipelines.filehash import path_digest

        return {"$path": [str(value), path_digest(value)]}
    if isinstance(value, (decimal.Decimal, uuid.UUID, PurePath, complex)):
        return {"$" + type(value).__name__: str(value)}
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        return {"$numpy": [str(value.dtype), _canon(value.item(), dump, depth + 1)]}
    if dump is None:
        raise Unhashable(f"a {type(value).__name__} has no canonical JSON form")
    try:
        data = dump(value)
    except Exception as exc:
        raise Unhashable(str(exc) or type(exc).__name__) from exc
    return {"$blob": [_qualified(type(value)), hashlib.sha256(data).hexdigest()]}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any, *, dump: Callable[[Any], bytes] | None = None) -> str:
    """``canonical(value)`` as compact JSON text.

    Example::

        >>> canonical_json({"lr": 0.1, "layers": [64, 32]})
        '{"layers":[64,32],"lr":0.1}'
    """
    return _dumps(canonical(value, dump=dump))


def sha256_json(obj: Any) -> str:
    """The SHA-256 of an already canonical, JSON-able structure.

    Example::

        >>> len(sha256_json({"a": 1}))
        64
    """
    return hashlib.sha256(_dumps(obj).encode()).hexdigest()


def _const_value(value: Any, depth: int = 0) -> str:
    """A stable text for a constant found in user code (a global, a default, a cell)."""
    if depth > 20:
        return "deep"
    if isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) > _MAX_ELEMENTS:
        return f"{type(value).__name__}[{len(value)}]"
    try:
        return _dumps(canonical(value))
    except (Unhashable, TypeError, ValueError, RecursionError):
        return f"<{_qualified(type(value))}>"


def _code_const(value: Any) -> str:
    """A stable text for a constant of a code object (``co_consts``)."""
    if isinstance(value, (frozenset, set)):
        return "{" + ",".join(sorted(_code_const(v) for v in value)) + "}"
    if isinstance(value, tuple):
        return "(" + ",".join(_code_const(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


# -- code -----------------------------------------------------------------------------


def _code_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_code_names(const))
    return names


def _code_digest(code: types.CodeType, h: Any, *, skip_first_const: bool = False) -> None:
    h.update(code.co_code)
    h.update(
        repr(
            (
                code.co_name,
                code.co_argcount,
                code.co_posonlyargcount,
                code.co_kwonlyargcount,
                code.co_flags,
                code.co_names,
                code.co_varnames,
                code.co_freevars,
                code.co_cellvars,
            )
        ).encode()
    )
    consts = code.co_consts[1:] if skip_first_const else code.co_consts
    for const in consts:
        if isinstance(const, types.CodeType):
            h.update(b"<code>")
            _code_digest(const, h)
        else:
            h.update(_code_const(const).encode())
        h.update(b"\x00")


def _unwrap(obj: Any) -> Any:
    """The user-level function behind opsloop's wrappers, methods and static methods."""
    for _ in range(20):
        inner = getattr(obj, "__opsloop_fn__", None)  # Step and Pipeline objects
        if inner is not None and inner is not obj:
            obj = inner
        elif isinstance(obj, (staticmethod, classmethod, types.MethodType)):
            obj = obj.__func__
        else:
            break
    return obj


class CodeHasher:
    """Code hashes of functions, sharing work between the steps of one pipeline run.

    The memo holds objects by identity for the life of the hasher: make one per run,
    so that code changed between runs (a reloaded module) is hashed again.

    Example::

        hasher = CodeHasher()
        key_part = hasher.hash(train)          # hex SHA-256
        modules = hasher.modules(train)        # {"myproject.features", "__main__", ...}
    """

    def __init__(self) -> None:
        # id(obj) -> (own digest line, referenced user objects, module name); the
        # object itself is kept alive in _keep so that ids are not reused meanwhile.
        self._own: dict[int, tuple[str, list[Any], str | None]] = {}
        self._keep: list[Any] = []
        self._closure: dict[int, tuple[str, frozenset[str]]] = {}

    def hash(self, fn: Callable[..., Any]) -> str:
        """The code hash of ``fn`` and all the project code it reaches.

        Example::

            CodeHasher().hash(train)      # "3f1c...": 64 hex digits
        """
        return self._reach(fn)[0]

    def modules(self, fn: Callable[..., Any]) -> frozenset[str]:
        """The project modules whose code ``fn`` reaches (to be shipped by value).

        Example::

            CodeHasher().modules(train)   # frozenset({"__main__", "myproject.features"})
        """
        return self._reach(fn)[1]

    def _reach(self, fn: Callable[..., Any]) -> tuple[str, frozenset[str]]:
        root = _unwrap(fn)
        cached = self._closure.get(id(root))
        if cached is not None:
            return cached
        seen: set[int] = set()
        lines: list[str] = []
        modules: set[str] = set()
        stack = [root]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            line, refs, module = self._own_digest(obj)
            lines.append(line)
            if module:
                modules.add(module)
            stack.extend(refs)
        h = hashlib.sha256(f"opsloop-code-v{FINGERPRINT_VERSION}\n".encode())
        for line in sorted(lines):
            h.update(line.encode())
            h.update(b"\n")
        out = (h.hexdigest(), frozenset(modules))
        self._closure[id(root)] = out
        self._keep.append(root)
        return out

    def _own_digest(self, obj: Any) -> tuple[str, list[Any], str | None]:
        memo = self._own.get(id(obj))
        if memo is not None:
            return memo
        if isinstance(obj, type):
            out = self._class_digest(obj)
        elif isinstance(obj, functools.partial):
            refs: list[Any] = []
            parts = [
                self._value_text(obj.func, refs),
                *(self._value_text(a, refs) for a in obj.args),
                *(f"{k}={self._value_text(v, refs)}" for k, v in sorted(obj.keywords.items())),
            ]
            out = (f"partial {hashlib.sha256(repr(parts).encode()).hexdigest()}", refs, None)
        else:
            out = self._function_digest(obj)
        self._own[id(obj)] = out
        self._keep.append(obj)
        return out

    def _function_digest(self, fn: Any) -> tuple[str, list[Any], str | None]:
        code = getattr(fn, "__code__", None)
        if not isinstance(code, types.CodeType):
            return (f"callable {_qualified(fn)}", [], None)
        h = hashlib.sha256()
        doc = getattr(fn, "__doc__", None)
        skip_doc = bool(code.co_consts) and doc is not None and code.co_consts[0] == doc
        _code_digest(code, h, skip_first_const=skip_doc)
        refs: list[Any] = []
        parts: list[str] = []
        fn_globals: dict[str, Any] = getattr(fn, "__globals__", {}) or {}
        names = _code_names(code)
        name_set = set(names)
        for name in dict.fromkeys(names):
            if name not in fn_globals:
                continue  # an attribute name or a builtin
            value = fn_globals[name]
            if isinstance(value, types.ModuleType):
                parts.append(f"{name}=module {value.__name__}")
                if is_user_module(value.__name__):
                    # ``mymod.helper(x)``: count the module attributes the code names.
                    for attr in sorted(name_set):
                        if attr in vars(value):
                            parts.append(
                                f"{name}.{attr}={self._value_text(vars(value)[attr], refs)}"
                            )
                continue
            parts.append(f"{name}={self._value_text(value, refs)}")
        for var, cell in zip(
            code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False
        ):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                parts.append(f"cell {var}=<empty>")
                continue
            parts.append(f"cell {var}={self._value_text(content, refs)}")
        for default in getattr(fn, "__defaults__", None) or ():
            parts.append(f"default={self._value_text(default, refs)}")
        for k, default in sorted((getattr(fn, "__kwdefaults__", None) or {}).items()):
            parts.append(f"kwdefault {k}={self._value_text(default, refs)}")
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            parts.append(f"wraps={self._value_text(wrapped, refs)}")
        h.update("\n".join(parts).encode())
        module = getattr(fn, "__module__", None)
        return (f"function {_qualified(fn)} {h.hexdigest()}", refs, module)

    def _class_digest(self, cls: type) -> tuple[str, list[Any], str | None]:
        refs: list[Any] = []
        parts: list[str] = []
        for base in cls.__bases__:
            parts.append(f"base={self._value_text(base, refs)}")
        try:
            annotations = inspect.get_annotations(cls)
        except Exception:  # a broken annotation must not stop the hash
            annotations = {}
        if isinstance(annotations, dict):
            for k, ann in sorted(annotations.items()):
                parts.append(f"ann {k}={ann if isinstance(ann, str) else _ann_text(ann)}")
        for name in sorted(vars(cls)):
            if name in _SKIP_CLASS_ATTRS:
                continue
            value = vars(cls)[name]
            if isinstance(value, property):
                for role, accessor in (
                    ("get", value.fget),
                    ("set", value.fset),
                    ("del", value.fdel),
                ):
                    if accessor is not None:
                        parts.append(f"{name}.{role}={self._value_text(accessor, refs)}")
                continue
            parts.append(f"{name}={self._value_text(value, refs)}")
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return (f"class {_qualified(cls)} {digest}", refs, cls.__module__)

    def _value_text(self, value: Any, refs: list[Any]) -> str:
        """Name a referenced value; queue it when it is project code to hash too."""
        inner = _unwrap(value)
        if isinstance(inner, (types.FunctionType, type, functools.partial)):
            module = getattr(inner, "__module__", None)
            if isinstance(inner, functools.partial) or is_user_module(module):
                refs.append(inner)
                return f"code {_qualified(inner)}"
            return f"lib {_qualified(inner)}"
        if isinstance(inner, (types.BuiltinFunctionType, types.MethodWrapperType)):
            return f"lib {_qualified(inner)}"
        if isinstance(value, types.ModuleType):
            return f"module {value.__name__}"
        text = _const_value(value)
        cls = type(value)
        if text.startswith("<") and is_user_module(cls.__module__):
            refs.append(cls)
        return f"value {text}"


def _ann_text(annotation: Any) -> str:
    if isinstance(annotation, type):
        return _qualified(annotation)
    return repr(annotation)


def iter_code_modules(hasher: CodeHasher, fns: Iterable[Callable[..., Any]]) -> frozenset[str]:
    """The project modules reached from any of ``fns``.

    Example::

        iter_code_modules(CodeHasher(), [load, train])   # frozenset({"__main__"})
    """
    out: set[str] = set()
    for fn in fns:
        out |= hasher.modules(fn)
    return frozenset(out)
