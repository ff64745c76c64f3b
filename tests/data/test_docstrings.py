"""The Example sections of the data modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["tags", "conll", "corpora", "episode", "samplers", "splits", "files", "collate"])
def test_docstring_examples(module: str):
    result = doctest.testmod(importlib.import_module(f"metalearn_nlp.data.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
