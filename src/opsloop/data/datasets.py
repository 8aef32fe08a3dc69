"""``opsloop.data``'s functions: datasets on the process's default store.

They are ``DatasetService`` on ``opsloop.store.default_store()`` plus the active run:
inside ``opsloop.start_run()``, every version registered or read is recorded as an
input of the run, so lineage runs data -> run -> model version without the user
writing it down. Example::

    import opsloop
    import opsloop.data

    dv = opsloop.data.register(df, "sensors", description="hourly readings")
    dv.ref                                            # "sensors@1"
    with opsloop.start_run(experiment="anomaly"):
        train = opsloop.data.get("sensors@latest")    # a run input of this run
    opsloop.data.diff("sensors@1", "sensors@2").columns["temp"].psi
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from opsloop.data.compare import DatasetDiff
from opsloop.data.entities import Dataset, DatasetVersion
from opsloop.data.service import DatasetService
from opsloop.errors import InvalidInput
from opsloop.store import default_service
from opsloop.tracking import fluent
from opsloop.tracking.capture import StepLog, current_step_log

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]
    import pyarrow as pa


def _service() -> DatasetService:
    return default_service(DatasetService)


def register(
    data: object,
    name: str,
    *,
    description: str | None = None,
    produced_by_step: str | None = None,
) -> DatasetVersion:
    """Store a table as a version of dataset ``name``; returns the version.

    ``data`` is a pandas DataFrame, a pyarrow Table, or the path of a CSV or Parquet
    file or of a folder of them (concatenated in file-name order). The version is
    named by the SHA-256 of its canonical Parquet bytes: registering the same content
    again returns the existing version (``is_new`` False) instead of a new one. With
    an active run, the run is recorded as the version's producer and the version as
    the run's input. ``produced_by_step`` names the pipeline step that made it.

    Example::

        dv = opsloop.data.register("readings/", "sensors", description="hourly readings")
        dv.ref, dv.num_rows, dv.digest[:12]        # ("sensors@3", 1000000, "9f2c1e7a0b4d")
        dv.profile["temp"].numeric.quantiles[0.5]
    """
    step_log = current_step_log()
    run = fluent.active_run()
    svc = _service()
    dv = svc.register(
        data,
        name,
        description=description,
        run_id=run.info.run_id if run else None,
        produced_by_step=produced_by_step or (step_log.step if step_log else None),
    )
    _record_input(svc, dv, run, step_log)
    return dv


def _record_input(
    svc: DatasetService, dv: DatasetVersion, run: Any, step_log: StepLog | None
) -> None:
    if step_log is not None:
        # Inside a pipeline step the step's run may not be written yet: the runner
        # records the input with the step's end.
        step_log.add_input(dv.name, dv.version)
    elif run is not None:
        svc.log_input(run.info.run_id, dv)


@overload
def get(
    name: str, version: int | str | None = None, *, as_: Literal["pandas"] = "pandas"
) -> pd.DataFrame: ...


@overload
def get(name: str, version: int | str | None = None, *, as_: Literal["arrow"]) -> pa.Table: ...


def get(
    name: str, version: int | str | None = None, *, as_: Literal["pandas", "arrow"] = "pandas"
) -> Any:
    """Read a dataset version as a pandas DataFrame (default) or a pyarrow Table.

    ``version`` is a number, ``"latest"`` (the default), a digest or a digest prefix;
    ``name`` may carry it instead (``"sensors@3"``). With an active run, the version
    is recorded as the run's input.

    Example::

        df = opsloop.data.get("sensors")                    # latest, as pandas
        tbl = opsloop.data.get("sensors", 2, as_="arrow")
        df = opsloop.data.get("sensors@9f2c1e7")            # by digest prefix
    """
    if as_ not in ("pandas", "arrow"):
        raise InvalidInput(f"as_ must be 'pandas' or 'arrow', got {as_!r}")
    svc = _service()
    dv = svc.get_version(name, version)
    table = svc.read_table(dv)
    _record_input(svc, dv, fluent.active_run(), current_step_log())
    return table if as_ == "arrow" else table.to_pandas()


def get_version(name: str, version: int | str | None = None) -> DatasetVersion:
    """A version's record (schema, profile, digest, lineage) without reading its data.

    Example::

        dv = opsloop.data.get_version("sensors@2")
        [c.name for c in dv.schema], dv.profile["site"].categorical.distinct
    """
    return _service().get_version(name, version)


def versions(name: str) -> list[DatasetVersion]:
    """Every version of a dataset, oldest first.

    Example::

        [(v.version, v.num_rows) for v in opsloop.data.versions("sensors")]
    """
    return _service().versions(name)


def list_datasets() -> list[Dataset]:
    """Every dataset with a summary of its latest version, by name.

    Example::

        for d in opsloop.data.list_datasets():
            print(d.name, d.latest_version, d.num_rows)
    """
    return _service().list_datasets()


def diff(a: str | DatasetVersion, b: str | DatasetVersion) -> DatasetDiff:
    """Compare version ``b`` with the reference ``a``: schema changes, row counts and
    per-column distribution shift (PSI, mean/std shift, category mix), from the two
    stored profiles. See ``opsloop.data.compare`` for the formulas.

    Example::

        d = opsloop.data.diff("sensors@1", "sensors@latest")
        d.added, d.removed, d.retyped
        {c: s.psi for c, s in d.columns.items() if s.psi and s.psi > 0.25}
    """
    return _service().diff(a, b)


def set_validation_report(
    name: str, report: dict[str, Any], version: int | str | None = None
) -> DatasetVersion:
    """Store a validation report (a JSON object) with a version; ``opsloop data show``
    prints its summary.

    Example::

        opsloop.data.set_validation_report("sensors@3", report.to_dict())
    """
    return _service().set_validation_report(name, report, version)
