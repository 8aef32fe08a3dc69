"""Monitoring: drift of a current batch against a reference (issue 6, the engine).

    import opsloop.monitoring as mon

    ref = mon.Reference.fit(train_df)                 # or Reference.from_dataset("sensors@3")
    report = mon.drift(ref, todays_df)                # reference may also be a DataFrame,
    report.drifted_columns, report.alerts             # a pyarrow Table or "sensors@3"
    report.to_frame(); report.to_json()

The modules: ``checks`` (``drift``, ``DriftReport``, the default tests, thresholds and
correction), ``reference`` (``Reference``: fitted once, stored), ``stats`` (the
statistics, equal to scipy's), ``multivariate`` (PCA reconstruction error, domain
classifier), ``columns`` (reading one column of a DataFrame or Arrow table).

(The module is ``checks``, not ``drift``: a submodule named like the function would
replace ``opsloop.monitoring.drift`` with itself once imported.) Exports load lazily,
so ``import opsloop.monitoring`` costs nothing until used (and
scikit-learn is imported only by the domain classifier).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsloop.monitoring.checks import ColumnDrift, DriftReport, drift
    from opsloop.monitoring.reference import Reference

_EXPORTS = {
    "drift": "opsloop.monitoring.checks",
    "DriftReport": "opsloop.monitoring.checks",
    "ColumnDrift": "opsloop.monitoring.checks",
    "Reference": "opsloop.monitoring.reference",
}

__all__ = ["ColumnDrift", "DriftReport", "Reference", "drift"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'opsloop.monitoring' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
