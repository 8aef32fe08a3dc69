"""The examples in the docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "opsloop.aiops.logs",
    "opsloop.aiops.logs.decoding",
    "opsloop.aiops.logs.files",
    "opsloop.aiops.logs.miner",
    "opsloop.aiops.logs.tokens",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
