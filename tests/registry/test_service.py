"""The registry on SQLite and PostgreSQL: models, versions, tags, aliases."""

from __future__ import annotations

import threading

import pytest

from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.registry.service import RegistryService
from opsloop.store import Store
from opsloop.tracking.service import TrackingService


@pytest.fixture
def reg(store: Store) -> RegistryService:
    return RegistryService(store)


def test_models_versions_aliases(reg: RegistryService, store: Store) -> None:
    run_id = TrackingService(store).create_run("0").info.run_id
    reg.create_registered_model("churn", tags={"team": "a"}, description="churn model")
    with pytest.raises(Conflict):
        reg.create_registered_model("churn")
    v1 = reg.create_model_version("churn", "mlflow-artifacts:/0/x/artifacts/model", run_id=run_id)
    v2 = reg.create_model_version("churn", "mlflow-artifacts:/0/y/artifacts/model", tags={"k": "v"})
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.run_id == run_id and v2.tags == {"k": "v"}
    reg.set_registered_model_alias("churn", "production", 1)
    assert reg.get_model_version_by_alias("churn", "production").version == "1"
    reg.set_registered_model_alias("churn", "production", 2)
    assert reg.get_model_version_by_alias("churn", "production").version == "2"
    model = reg.get_registered_model("churn")
    assert model.aliases == {"production": "2"} and model.tags == {"team": "a"}
    assert [v.version for v in model.latest_versions] == ["2"]
    assert reg.resolve("models:/churn@production").version == "2"
    assert reg.resolve("models:/churn/1").version == "1"
    assert reg.resolve("models:/churn/latest").version == "2"
    reg.transition_model_version_stage("churn", 1, "Staging")
    assert reg.resolve("models:/churn/Staging").version == "1"
    reg.update_model_version("churn", 1, "first")
    assert reg.get_model_version("churn", 1).description == "first"
    reg.set_model_version_tag("churn", 1, "validated", "yes")
    reg.delete_model_version_tag("churn", 1, "validated")
    assert reg.get_model_version("churn", 1).tags == {}
    renamed = reg.rename_registered_model("churn", "churn2")
    assert renamed.aliases == {"production": "2"}
    assert reg.get_model_version("churn2", 2).tags == {"k": "v"}
    with pytest.raises(NotFound):
        reg.get_registered_model("churn")
    reg.delete_model_version("churn2", 2)
    with pytest.raises(NotFound):
        reg.get_model_version_by_alias("churn2", "production")
    reg.delete_registered_model("churn2")
    with pytest.raises(NotFound):
        reg.get_registered_model("churn2")


def test_bad_input(reg: RegistryService) -> None:
    for bad in ("", "a/b", "x" * 251):
        with pytest.raises(InvalidInput):
            reg.create_registered_model(bad)
    reg.create_registered_model("m")
    v = reg.create_model_version("m", "mlflow-artifacts:/0/r/artifacts/model")
    for alias in ("latest", "v3", "bad alias", ""):
        with pytest.raises(InvalidInput):
            reg.set_registered_model_alias("m", alias, v.version)
    with pytest.raises(NotFound):
        reg.set_registered_model_alias("m", "prod", 9)
    with pytest.raises(NotFound):
        reg.create_model_version("nope", "x")
    with pytest.raises(InvalidInput):
        reg.get_model_version("m", "abc")
    with pytest.raises(InvalidInput):
        reg.resolve("runs:/abc")


def test_alias_moves_atomically_under_concurrent_readers(reg: RegistryService) -> None:
    reg.create_registered_model("m")
    for _ in range(3):
        reg.create_model_version("m", "mlflow-artifacts:/0/r/artifacts/model")
    reg.set_registered_model_alias("m", "production", 1)
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(reg.get_model_version_by_alias("m", "production").version)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(30):
        reg.set_registered_model_alias("m", "production", 1 + i % 3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert seen <= {"1", "2", "3"}


def test_concurrent_version_creation_numbers_each_once(reg: RegistryService) -> None:
    reg.create_registered_model("m")
    out: list[str] = []

    def make() -> None:
        for _ in range(5):
            out.append(
                reg.create_model_version("m", "mlflow-artifacts:/0/r/artifacts/model").version
            )

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out, key=int) == [str(i) for i in range(1, 21)]
