"""Deployments on SQLite and PostgreSQL: traffic split checks, promote and rollback with
who and why, following an alias, concurrent changes."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from opsloop.errors import Conflict, InvalidInput, InvalidState, NotFound
from opsloop.registry.service import RegistryService
from opsloop.serving.deployments import DeploymentService
from opsloop.store import Store
from opsloop.store.tables import deployment_events, deployments


def make_versions(store: Store, name: str = "churn", count: int = 4) -> RegistryService:
    """A registered model with ``count`` versions (no artifacts: deployments only name them)."""
    reg = RegistryService(store)
    reg.create_registered_model(name)
    for _ in range(count):
        reg.create_model_version(
            name, "mlflow-artifacts:/0/x", flavor="sklearn", signature="{}", environment="{}"
        )
    return reg


@pytest.fixture
def svc(store: Store) -> DeploymentService:
    make_versions(store)
    return DeploymentService(store)


def _counts(store: Store) -> tuple[int, int]:
    with store.db.read() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(deployments)).scalar_one(),
            conn.execute(sa.select(sa.func.count()).select_from(deployment_events)).scalar_one(),
        )


def test_create_pinned_with_canary_and_shadow(svc: DeploymentService) -> None:
    d = svc.create(
        "churn-api",
        "churn",
        version=2,
        canary=3,
        canary_share=10,
        shadow=4,
        settings={"max_batch_size": 64, "log_sample_rate": 0.5},
        description="churn scoring",
        who="ana",
        reason="first release",
    )
    assert (d.model, d.alias, d.stable_version, d.canary_version, d.shadow_version) == (
        "churn", None, 2, 3, 4,
    )  # fmt: skip
    assert d.traffic == {2: 90.0, 3: 10.0} and d.model_uri == "models:/churn/2"
    assert d.settings == {"max_batch_size": 64, "log_sample_rate": 0.5}
    assert d.revision == 1 and d.created_by == "ana"
    r = svc.resolve("churn-api")
    assert [(t.version, t.share, t.role) for t in r.served] == [
        (2, 90.0, "stable"),
        (3, 10.0, "canary"),
    ]
    assert r.shadow is not None and r.shadow.version == 4 and r.shadow.uri == "models:/churn/4"
    assert r.versions == [2, 3, 4]
    assert r.settings["max_batch_size"] == 64 and r.settings["workers"] == 1  # defaults filled
    [ev] = svc.history("churn-api")
    assert (ev.action, ev.who, ev.reason, ev.changes) == (
        "create", "ana", "first release", {"model": "models:/churn/2"},
    )  # fmt: skip
    assert [d.name for d in svc.list()] == ["churn-api"]
    # models:/NAME/VERSION and models:/NAME/latest pin too
    assert svc.create("b", "models:/churn/3").stable_version == 3
    assert svc.create("c", "models:/churn/latest").stable_version == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"model": "nope", "version": 1}, NotFound, "registered model 'nope' does not exist"),
        ({"model": "churn", "version": 9}, NotFound, "has no version 9 (the stable version)"),
        ({"model": "churn"}, InvalidInput, "needs a version"),
        ({"model": "models:/churn@prod"}, NotFound, "has no alias 'prod'"),
        ({"model": "models:/churn@prod", "version": 2}, InvalidInput, "follows an alias"),
        ({"model": "churn", "version": 1, "canary": 1}, InvalidInput, "another version than"),
        ({"model": "churn", "version": 1, "canary": 9}, NotFound, "no version 9 (the canary)"),
        ({"model": "churn", "version": 1, "canary": 2, "canary_share": 0}, InvalidInput, "between 0 and 100"),
        ({"model": "churn", "version": 1, "canary": 2, "canary_share": 100}, InvalidInput, "between 0 and 100"),
        ({"model": "churn", "version": 1, "canary": 2, "canary_share": -5}, InvalidInput, "between 0 and 100"),
        ({"model": "churn", "version": 1, "canary": 2, "canary_share": float("nan")}, InvalidInput, "between 0 and 100"),
        ({"model": "churn", "version": 1, "canary_share": 10}, InvalidInput, "needs a canary version"),
        ({"model": "churn", "version": 1, "shadow": 1}, InvalidInput, "shadow must be another"),
        ({"model": "churn", "version": 1, "canary": 2, "shadow": 2}, InvalidInput, "than the canary"),
        ({"model": "churn", "version": 1, "settings": {"max_batch": 3}}, InvalidInput, "unknown serving setting 'max_batch'"),
        ({"model": "churn", "version": 1, "settings": {"workers": 0}}, InvalidInput, "'workers' must be"),
        ({"model": "churn", "version": 1, "settings": {"log_sample_rate": 1.5}}, InvalidInput, "'log_sample_rate'"),
        ({"model": "churn", "version": 1, "settings": {"fault_delay_ms": -1}}, InvalidInput, "'fault_delay_ms' must be"),
        ({"model": "churn", "version": "x"}, InvalidInput, "version number"),
        ({"model": "s3://bucket/model", "version": 1}, InvalidInput, "not a models:/ URI"),
    ],
)  # fmt: skip
def test_bad_deployments_are_refused_and_leave_nothing(
    svc: DeploymentService, store: Store, kwargs: dict[str, Any], error: type, words: str
) -> None:
    kwargs = dict(kwargs)
    model = kwargs.pop("model")
    with pytest.raises(error) as info:
        svc.create("d", model, **kwargs)
    assert words in info.value.message  # type: ignore[attr-defined]
    assert _counts(store) == (0, 0)


def test_names_and_duplicates(svc: DeploymentService, store: Store) -> None:
    for bad in ("", "-x", "a/b", "a b", "x" * 251):
        with pytest.raises(InvalidInput):
            svc.create(bad, "churn", version=1)
    svc.create("d", "churn", version=1)
    with pytest.raises(Conflict, match="already exists"):
        svc.create("d", "churn", version=2)
    assert _counts(store) == (1, 1)
    with pytest.raises(NotFound, match="deployment 'missing' does not exist"):
        svc.get("missing")
    with pytest.raises(NotFound):
        svc.update("missing", canary=2)
    with pytest.raises(NotFound):
        svc.history("missing")


def test_update_canary_shadow_settings(svc: DeploymentService) -> None:
    svc.create("d", "churn", version=1, settings={"workers": 2})
    d = svc.update("d", canary=2, who="bo", reason="try v2")
    assert d.traffic == {1: 90.0, 2: 10.0} and d.revision == 2  # default share 10%
    d = svc.update("d", canary_share=25.5)
    assert d.traffic == {1: 74.5, 2: 25.5}
    d = svc.update("d", shadow=3, settings={"max_batch_size": 8, "workers": None})
    assert d.shadow_version == 3 and d.settings == {"max_batch_size": 8}
    same = svc.update("d", shadow=3)  # no change: no event
    assert same.revision == d.revision
    d = svc.update("d", version=4, canary=None, shadow=None, description="v4 only")
    assert d.traffic == {4: 100.0} and d.shadow_version is None and d.description == "v4 only"

    for kwargs, error, words in [
        ({}, InvalidInput, "nothing to update"),
        ({"canary_share": 50}, InvalidInput, "no canary to give a share to"),
        ({"canary": 4}, InvalidInput, "another version than the stable one (4)"),
        ({"canary": 2, "canary_share": 100}, InvalidInput, "between 0 and 100"),
        ({"canary": 2, "shadow": 2}, InvalidInput, "than the canary"),
        ({"canary": 7}, NotFound, "no version 7"),
        ({"version": None}, InvalidInput, "cannot be removed"),
        ({"settings": {"bogus": 1}}, InvalidInput, "unknown serving setting"),
        ({"canary": None, "canary_share": 5}, InvalidInput, "no canary"),
    ]:
        before = svc.get("d")
        with pytest.raises(error) as info:
            svc.update("d", **kwargs)
        assert words in info.value.message, (kwargs, info.value.message)
        assert svc.get("d") == before  # nothing half-written
    actions = [(e.action, e.who, e.reason) for e in svc.history("d")][::-1]
    assert actions[:2] == [("create", actions[0][1], ""), ("set_canary", "bo", "try v2")]
    assert [a for a, _, _ in actions] == ["create", "set_canary", "set_canary", "update", "update"]
    last = svc.history("d", limit=1)[0]
    assert last.changes["stable_version"] == [1, 4] and last.changes["canary_version"] == [2, None]


def test_promote_and_rollback_record_who_and_why(svc: DeploymentService) -> None:
    svc.create("d", "churn", version=1, who="ana", reason="v1 goes live")
    with pytest.raises(InvalidState, match="no canary to promote"):
        svc.promote("d")
    with pytest.raises(InvalidState, match="no previous stable version"):
        svc.rollback("d", reason="?")
    svc.update("d", canary=2, canary_share=20, who="ana")
    d = svc.promote("d", who="bo", reason="v2 is better")
    assert d.traffic == {2: 100.0} and d.canary_version is None
    svc.update("d", canary=3, who="ana")
    svc.promote("d", who="bo", reason="v3 is better")
    svc.update("d", canary=4, shadow=1)
    d = svc.rollback("d", who="cy", reason="v3's error rate doubled")
    # back to v2, the canary dropped, the shadow kept
    assert (d.stable_version, d.canary_version, d.shadow_version) == (2, None, 1)
    d = svc.rollback("d", who="cy", reason="v2 too")
    assert d.stable_version == 1 and d.shadow_version is None  # shadow was v1: now stable
    with pytest.raises(InvalidState, match="only served version 1"):
        svc.rollback("d", who="cy")
    events = svc.history("d")[::-1]
    assert [(e.action, e.stable_version, e.who) for e in events] == [
        ("create", 1, "ana"),
        ("set_canary", 1, "ana"),
        ("promote", 2, "bo"),
        ("set_canary", 2, "ana"),
        ("promote", 3, "bo"),
        ("update", 3, events[5].who),
        ("rollback", 2, "cy"),
        ("rollback", 1, "cy"),
    ]
    assert events[6].reason == "v3's error rate doubled"
    assert events[6].changes["stable_version"] == [3, 2]
    assert events[6].changes["canary_version"] == [4, None]
    assert [e.revision for e in events] == list(range(1, 9))
    assert all(e.time > 0 for e in events)


def test_who_defaults_to_the_os_user(
    svc: DeploymentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    svc.create("d", "churn", version=1)
    assert svc.history("d")[0].who == getpass.getuser()
    monkeypatch.setenv("OPSLOOP_USER", "ci-bot")
    svc.update("d", canary=2)
    assert svc.history("d")[0].who == "ci-bot"


def test_following_an_alias(svc: DeploymentService, store: Store) -> None:
    reg = RegistryService(store)
    reg.set_registered_model_alias("churn", "production", 1)
    d = svc.create("d", "models:/churn@production", canary=2, shadow=3)
    assert (d.alias, d.stable_version, d.model_uri) == (
        "production", 1, "models:/churn@production",
    )  # fmt: skip
    with pytest.raises(InvalidInput, match="follows churn@production"):
        svc.update("d", version=3)

    # the alias moved in the registry: noticed and recorded on the next read
    reg.set_registered_model_alias("churn", "production", 2)
    r = svc.resolve("d")
    # v2 was the canary: now it is the stable version, alone
    assert [(t.version, t.share) for t in r.served] == [(2, 100.0)] and r.revision == 2
    moved = svc.history("d")[0]
    assert (moved.action, moved.who) == ("alias_moved", "registry")
    assert "churn@production moved from version 1 to 2" in moved.reason
    assert svc.resolve("d").revision == 2  # nothing new: no second event

    # promoting moves the alias, in the same step
    svc.update("d", canary=4, canary_share=50)
    svc.promote("d", reason="v4")
    assert reg.get_model_version_by_alias("churn", "production").version == "4"
    # rolling back moves it back
    svc.rollback("d", reason="v4 drifts")
    assert reg.get_model_version_by_alias("churn", "production").version == "2"
    assert svc.get("d").stable_version == 2
    actions = [e.action for e in svc.history("d")][::-1]
    assert actions == ["create", "alias_moved", "set_canary", "promote", "rollback"]
    # the alias deleted: the last version seen keeps serving, with a warning
    reg.delete_registered_model_alias("churn", "production")
    r = svc.resolve("d")
    assert r.stable.version == 2 and r.warning and "no longer exists" in r.warning


def test_concurrent_updates_are_not_lost(svc: DeploymentService) -> None:
    svc.create("d", "churn", version=1)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def change(i: int) -> None:
        try:
            start.wait()
            if i == 0:
                svc.update("d", canary=2, canary_share=30, who="t0")
            elif i == 1:
                svc.update("d", shadow=3, who="t1")
            else:
                svc.update("d", settings={"max_batch_size": i}, who=f"t{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=change, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    d = svc.get("d")
    assert d.canary_version == 2 and d.canary_share == 30 and d.shadow_version == 3
    assert d.revision == 9
    events = svc.history("d")[::-1]
    assert [e.revision for e in events] == list(range(1, 10))
    # each settings change saw the one before it: a chain, none lost
    sizes = [e.changes["settings"] for e in events if "settings" in e.changes]
    assert len(sizes) == 6
    for before, after in itertools.pairwise(sizes):
        assert after[0] == before[1]
    assert d.settings == sizes[-1][1]


def test_expected_revision_refuses_a_stale_change(svc: DeploymentService) -> None:
    d = svc.create("d", "churn", version=1)
    svc.update("d", canary=2, expected_revision=d.revision)
    with pytest.raises(Conflict, match="at revision 2, not 1"):
        svc.update("d", canary=3, expected_revision=d.revision)
    with pytest.raises(Conflict):
        svc.promote("d", expected_revision=1)
    assert svc.get("d").canary_version == 2


def test_the_python_api(db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``opsloop.serving.api`` on the default store (here: the test's database)."""
    import time

    from opsloop.serving import api
    from opsloop.serving.predictions import PredictionWriter
    from opsloop.store import default_store, reset_default_store

    monkeypatch.setenv("OPSLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPSLOOP_DATABASE_URL", db_url)
    monkeypatch.setenv("OPSLOOP_ARTIFACTS", str(tmp_path / "artifacts"))
    reset_default_store()
    try:
        make_versions(default_store(), "fraud", 3)
        d = api.deploy("fraud", "fraud", version=1, settings={"workers": 2}, reason="go", who="ana")
        assert d.traffic == {1: 100.0}
        api.update_deployment("fraud", canary=2, canary_share=5, reason="try v2")
        assert api.promote("fraud", reason="v2 wins").stable_version == 2
        assert api.rollback("fraud", reason="no").stable_version == 1
        assert api.get_deployment("fraud").revision == 4
        assert [x.name for x in api.list_deployments()] == ["fraud"]
        assert [e.action for e in api.deployment_history("fraud")] == [
            "rollback", "promote", "set_canary", "create",
        ]  # fmt: skip
        assert api.resolve_deployment("fraud").settings["workers"] == 2

        t0 = float(int(time.time()) - 60)
        with PredictionWriter(default_store(), start=False) as w:
            w.log("fraud", 1, "a", {"amount": 5.0}, 0, 1.0, t0)
            w.log("fraud", 1, "b", {"amount": 9.0}, 1, 1.0, t0 + 1)
        assert api.log_labels("fraud", [{"request_id": "b", "label": 1}]) == 1
        df = api.predictions("fraud", since=t0, with_labels=True)
        assert df["request_id"].tolist() == ["a", "b"] and df["label"].tolist()[1] == 1
    finally:
        reset_default_store()


def test_routing_by_request_id(svc: DeploymentService) -> None:
    svc.create("d", "churn", version=1, canary=2, canary_share=20)
    r = svc.resolve("d")
    ids = [f"req-{i}" for i in range(5000)]
    routed = [r.route(rid).version for rid in ids]
    assert 0.17 < routed.count(2) / len(ids) < 0.23
    assert routed == [svc.resolve("d").route(rid).version for rid in ids]  # sticky
    svc.update("d", canary=None)
    assert {svc.resolve("d").route(rid).version for rid in ids} == {1}


def test_delete_and_server_settings(svc: DeploymentService, store: Store) -> None:
    from opsloop.store.events import list_events

    svc.create("d", "churn", version=1, settings={"port": 18080, "host": "0.0.0.0"})
    svc.create("e", "churn", version=2)
    for settings, error, words in [
        ({"port": 18080}, Conflict, "deployment 'd'"),
        ({"port": 0}, InvalidInput, "port"),
        ({"port": 65536}, InvalidInput, "port"),
        ({"port": "8080"}, InvalidInput, "port"),
        ({"host": "a b"}, InvalidInput, "host"),
        ({"host": 1}, InvalidInput, "host"),
    ]:
        with pytest.raises(error) as info:
            svc.update("e", settings=settings)
        assert words in info.value.message, (settings, info.value.message)
    assert svc.resolve("e").settings["port"] is None  # unset: not managed
    with pytest.raises(NotFound):
        svc.delete("nope")
    before = _counts(store)
    svc.delete("d", who="ana", reason="retired")
    assert _counts(store) == (before[0] - 1, before[1] - 1)  # its one event went with it
    assert not svc.exists("d")
    (event,) = [e for e in list_events(store.db, kind="deployment.deleted") if e.subject == "d"]
    assert event.payload["who"] == "ana" and event.payload["reason"] == "retired"
    assert "deleted by ana: retired" in event.message
    assert svc.update("e", settings={"port": 18080}).settings == {"port": 18080}  # port freed
