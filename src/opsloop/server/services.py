"""The domain services one app serves, opened on one store."""

from __future__ import annotations

from dataclasses import dataclass

from opsloop.registry.service import RegistryService
from opsloop.store import Store
from opsloop.tracking.service import TrackingService


@dataclass(frozen=True, slots=True)
class Services:
    store: Store
    tracking: TrackingService
    registry: RegistryService

    @classmethod
    def open(cls, store: Store) -> Services:
        return cls(store, TrackingService(store), RegistryService(store))
