"""The store: the metadata database and the artifact store, opened together.

``Store.open()`` reads the settings from the environment, applies pending
migrations and gives the one object that every part works through::

    store = Store.open()
    with store.db.read() as conn: ...
    store.artifacts.put_bytes("0/abc/artifacts/notes.txt", b"...")
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from opsloop.core.config import Settings
from opsloop.store.blobs import BlobStore


class Store:
    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        # Here, not at the top: what needs only blobs (pipeline workers) does not load
        # SQLAlchemy by importing this package.
        from opsloop.store.artifacts import ArtifactStore
        from opsloop.store.db import Database

        self.settings = settings
        self.db = Database(settings.database_url)
        if migrate:
            self.db.upgrade()
        self.blobs = BlobStore(settings.artifacts_url)
        self.artifacts = ArtifactStore(self.db, self.blobs)

    @classmethod
    def open(cls, settings: Settings | None = None) -> Store:
        return cls(settings or Settings.from_env())

    def close(self) -> None:
        self.db.dispose()


_default: Store | None = None
_default_key: tuple[str, str] | None = None
_lock = threading.Lock()
_local = threading.local()


@contextlib.contextmanager
def using_store(store: Store) -> Iterator[Store]:
    """Make ``store`` this thread's default store while the block runs: a pipeline step
    run in this process uses its pipeline's store for what it does through the fluent
    API, whatever the environment says.

    Example::

        with using_store(store):
            opsloop.log_text("...", "notes.txt")     # into ``store``
    """
    saved = getattr(_local, "store", None)
    _local.store = store
    try:
        yield store
    finally:
        _local.store = saved


def default_store() -> Store:
    """The process's store for the current settings (opened once, reopened if they
    change), or this thread's while ``using_store`` holds one."""
    global _default, _default_key
    override: Store | None = getattr(_local, "store", None)
    if override is not None:
        return override
    settings = Settings.from_env()
    key = (settings.database_url, settings.artifacts_url)
    with _lock:
        if _default is None or _default_key != key:
            if _default is not None:
                _default.close()
            _default = Store(settings)
            _default_key = key
        return _default


S = TypeVar("S")
_services: dict[Any, tuple[Store, Any]] = {}
_scoped: dict[tuple[Any, int], tuple[Store, Any]] = {}


def default_service(factory: Callable[[Store], S]) -> S:
    """One ``factory(store)`` (a domain part's service) per process for the default
    store, made again when the settings point at another store.

    Example::

        tracking = default_service(TrackingService)
    """
    store = default_store()
    if getattr(_local, "store", None) is store:  # a thread's own store (using_store)
        scoped = _scoped.get((factory, id(store)))
        if scoped is None or scoped[0] is not store:
            scoped = _scoped[(factory, id(store))] = (store, factory(store))
        mine: S = scoped[1]
        return mine
    held = _services.get(factory)
    if held is None or held[0] is not store:
        held = _services[factory] = (store, factory(store))
    service: S = held[1]
    return service


def reset_default_store() -> None:
    global _default, _default_key
    with _lock:
        if _default is not None:
            _default.close()
        _default = None
        _services.clear()
        _scoped.clear()
        _default_key = None
