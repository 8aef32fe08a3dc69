"""How step outputs (and code) become bytes, and bytes become values again.

Outputs are stored in the artifact store and named by the SHA-256 of their bytes, and
that hash feeds the cache keys of the steps downstream. So the bytes must be a faithful
and, where possible, deterministic image of the value:

* a pandas ``DataFrame`` or a pyarrow ``Table`` is written as Parquet (portable,
  columnar, deterministic for equal data: a step that re-runs and produces the same
  frame lets its downstream steps hit the cache). A frame Parquet cannot hold (non-string
  column names, mixed object columns) falls back to cloudpickle;
* anything else is written with cloudpickle.

Code is pickled with cloudpickle too, with the user's project modules (see
``fingerprint.is_user_module``) pickled *by value*: the worker runs exactly the code
whose hash keyed the cache, even when a long-lived worker imported an older version
of a module or cannot import it at all. Library code goes by reference and must be
installed where the step runs.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import types
from collections import ChainMap
from collections.abc import Iterable
from typing import Any, Final

import cloudpickle

PARQUET_PANDAS: Final = "parquet-pandas"
PARQUET_ARROW: Final = "parquet-arrow"
PICKLE: Final = "cloudpickle"
FORMATS: Final = (PARQUET_PANDAS, PARQUET_ARROW, PICKLE)
EXTENSIONS: Final = {PARQUET_PANDAS: "parquet", PARQUET_ARROW: "parquet", PICKLE: "pkl"}

_by_value_lock = threading.Lock()


def dump_value(value: Any, by_value: Iterable[str] = ()) -> tuple[bytes, str]:
    """The bytes of an output and their format.

    Example::

        >>> data, fmt = dump_value({"a": 1})
        >>> fmt
        'cloudpickle'
    """
    # A value can only be a DataFrame if pandas is already imported: checking
    # sys.modules keeps a worker that never sees a frame from importing pandas.
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        try:
            buf = io.BytesIO()
            value.to_parquet(buf, engine="pyarrow")
            return buf.getvalue(), PARQUET_PANDAS
        except Exception:  # Parquet cannot hold this frame: keep it whole as a pickle
            pass
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(value, pa.Table):
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(value, buf)
        return buf.getvalue(), PARQUET_ARROW
    return dumps_code(value, by_value), PICKLE


def load_value(data: bytes, fmt: str) -> Any:
    """The value that ``dump_value`` wrote as ``data`` in format ``fmt``.

    Example::

        >>> load_value(*dump_value([1, 2]))
        [1, 2]
    """
    if fmt == PICKLE:
        return pickle.loads(data)
    if fmt == PARQUET_PANDAS:
        import pandas as pd  # type: ignore[import-untyped]

        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    if fmt == PARQUET_ARROW:
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data))
    raise ValueError(f"unknown stored value format {fmt!r}; known: {', '.join(FORMATS)}")


def _code_reduce(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, keeping its file name: cloudpickle >= 3.1.3
    writes ``<dynamic-code>`` instead, and a step's traceback then loses its source lines."""
    ctor, args = cloudpickle.cloudpickle._code_reduce(code)
    if code.co_filename != "<dynamic-code>" and "<dynamic-code>" in args:
        i = args.index("<dynamic-code>")  # the first string argument is the file name
        args = (*args[:i], code.co_filename, *args[i + 1 :])
    return ctor, args


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table)


def _dumps(obj: Any) -> bytes:
    with io.BytesIO() as f:
        _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return f.getvalue()


def dumps_code(obj: Any, by_value: Iterable[str] = ()) -> bytes:
    """cloudpickle ``obj``, pickling the named modules by value.

    cloudpickle's by-value registry is process-wide, so the modules are registered for
    the length of this one call, under a lock.

    Example::

        payload = dumps_code(train, by_value={"myproject.features"})
    """
    names = [n for n in by_value if n not in ("__main__", "__mp_main__")]
    if not names:
        return _dumps(obj)
    with _by_value_lock:
        already = cloudpickle.list_registry_pickle_by_value()
        registered = []
        try:
            for name in names:
                module = sys.modules.get(name)
                if module is None or name in already:
                    continue  # not imported here (it arrived by value), or someone else's
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
            return _dumps(obj)
        finally:
            for module in registered:
                cloudpickle.unregister_pickle_by_value(module)
