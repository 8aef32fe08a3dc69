"""Monitoring: drift of a current batch against a reference (issue 6, the engine).

    import opsloop.monitoring as mon

    ref = mon.Reference.fit(train_df)                 # or Reference.from_dataset("sensors@3")
    report = mon.drift(ref, todays_df)                # reference may also be a DataFrame,
    report.drifted_columns, report.alerts             # a pyarrow Table or "sensors@3"
    report.to_frame(); report.to_json()

Monitors watch a deployment's prediction log on time (``monitors``, run by the
server's ``monitor_scheduler``; what a run checks is in ``window_checks``)::

    mon.create_monitor("churn", reference="sensors@3", every="10m", window="1h")
    mon.run_monitor("churn").status                   # "ok", "alert", "no_data", "failed"
    mon.monitor_results("churn")                      # the time series, a DataFrame

with data quality from ``quality`` and model performance - measured with labels,
estimated without (CBPE) - from ``performance``.

The modules: ``checks`` (``drift``, ``DriftReport``, the default tests, thresholds and
correction), ``reference`` (``Reference``: fitted once, stored), ``stats`` (the
statistics, equal to scipy's), ``multivariate`` (PCA reconstruction error, domain
classifier), ``columns`` (reading one column of a DataFrame or Arrow table).

(The module is ``checks``, not ``drift``: a submodule named like the function would
replace ``opsloop.monitoring.drift`` with itself once imported.) Exports load lazily,
so ``import opsloop.monitoring`` costs nothing until used (a drift check does not
import scikit-learn: its inner loops are compiled with numba, ``_kernels``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsloop.monitoring.checks import ColumnDrift, DriftReport, drift
    from opsloop.monitoring.monitors import (
        Monitor,
        MonitorRun,
        create_monitor,
        delete_monitor,
        get_monitor,
        list_monitors,
        monitor_results,
        monitor_runs,
        pause_monitor,
        resume_monitor,
        run_monitor,
    )
    from opsloop.monitoring.performance import CBPE, PerformanceResult
    from opsloop.monitoring.reference import Reference

_EXPORTS = {
    "drift": "opsloop.monitoring.checks",
    "DriftReport": "opsloop.monitoring.checks",
    "ColumnDrift": "opsloop.monitoring.checks",
    "Reference": "opsloop.monitoring.reference",
    # monitors over the prediction log
    "Monitor": "opsloop.monitoring.monitors",
    "MonitorRun": "opsloop.monitoring.monitors",
    "create_monitor": "opsloop.monitoring.monitors",
    "delete_monitor": "opsloop.monitoring.monitors",
    "get_monitor": "opsloop.monitoring.monitors",
    "list_monitors": "opsloop.monitoring.monitors",
    "monitor_results": "opsloop.monitoring.monitors",
    "monitor_runs": "opsloop.monitoring.monitors",
    "pause_monitor": "opsloop.monitoring.monitors",
    "resume_monitor": "opsloop.monitoring.monitors",
    "run_monitor": "opsloop.monitoring.monitors",
    "CBPE": "opsloop.monitoring.performance",
    "PerformanceResult": "opsloop.monitoring.performance",
}

__all__ = [
    "CBPE",
    "ColumnDrift",
    "DriftReport",
    "Monitor",
    "MonitorRun",
    "PerformanceResult",
    "Reference",
    "create_monitor",
    "delete_monitor",
    "drift",
    "get_monitor",
    "list_monitors",
    "monitor_results",
    "monitor_runs",
    "pause_monitor",
    "resume_monitor",
    "run_monitor",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'opsloop.monitoring' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
