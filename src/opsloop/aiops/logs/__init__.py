"""Log template mining: raw log lines in, templates and parameters out, one line at a time;
and log ingestion into the store, with the log anomaly detectors (``LogIngestor``,
loaded on first use so that mining alone does not load the store).

>>> from opsloop.aiops.logs import TemplateMiner
>>> miner = TemplateMiner()
>>> miner.add("Connection from 10.0.0.1 closed").template
'Connection from <*> closed'
"""

from typing import TYPE_CHECKING

from opsloop.aiops.logs.decoding import BadLine, Decoded, decode_line
from opsloop.aiops.logs.miner import MinerConfig, Parsed, Template, TemplateMiner
from opsloop.aiops.logs.store import load_miner, load_miner_blob, save_miner, save_miner_blob

if TYPE_CHECKING:
    from opsloop.aiops.logs.ingest import IngestResult, LogConfig, LogIngestor, ingestor_for

__all__ = [
    "BadLine",
    "Decoded",
    "IngestResult",
    "LogConfig",
    "LogIngestor",
    "MinerConfig",
    "Parsed",
    "Template",
    "TemplateMiner",
    "decode_line",
    "ingestor_for",
    "load_miner",
    "load_miner_blob",
    "save_miner",
    "save_miner_blob",
]

_LAZY = {"IngestResult", "LogConfig", "LogIngestor", "ingestor_for"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from opsloop.aiops.logs import ingest

        return getattr(ingest, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
