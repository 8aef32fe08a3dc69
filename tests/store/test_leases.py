"""Leases: one holder at a time; taken over only once expired; released at once."""

from __future__ import annotations

from opsloop.store import Store
from opsloop.store.leases import Lease, lease_holder


def test_one_holder_expiry_renewal_and_release(store: Store) -> None:
    a = Lease(store.db, "job", ttl_ms=1000, holder="a")
    b = Lease(store.db, "job", ttl_ms=1000, holder="b")
    assert lease_holder(store.db, "job", 0) is None
    assert a.take(10_000) and not b.take(10_100) and not b.may_take(10_100)
    assert a.current_holder(10_100) == "a"
    assert a.take(10_400)  # more than half left: held without a write
    assert a.take(10_700)  # renewed: now lasts until 11_700
    assert not b.take(11_500)
    assert b.take(11_700) and lease_holder(store.db, "job", 11_800) == "b"  # expired: taken over
    assert not a.may_take(11_800)
    b.release()
    assert lease_holder(store.db, "job", 11_800) is None
    assert a.take(11_800)
    other = Lease(store.db, "another-job", ttl_ms=1000, holder="b")
    assert other.take(11_800)  # a lease per name
    a.release()
    other.release()
