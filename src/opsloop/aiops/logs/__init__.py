"""Log template mining: raw log lines in, templates and parameters out, one line at a time.

>>> from opsloop.aiops.logs import TemplateMiner
>>> miner = TemplateMiner()
>>> miner.add("Connection from 10.0.0.1 closed").template
'Connection from <*> closed'
"""

from opsloop.aiops.logs.decoding import BadLine, Decoded, decode_line
from opsloop.aiops.logs.miner import MinerConfig, Parsed, Template, TemplateMiner
from opsloop.aiops.logs.store import load_miner, load_miner_blob, save_miner, save_miner_blob

__all__ = [
    "BadLine",
    "Decoded",
    "MinerConfig",
    "Parsed",
    "Template",
    "TemplateMiner",
    "decode_line",
    "load_miner",
    "load_miner_blob",
    "save_miner",
    "save_miner_blob",
]
