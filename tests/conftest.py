"""Shared pytest configuration.

Tests marked ``@pytest.mark.long`` are opt-in: they are collected as usual (nothing is
deselected) but skip themselves unless the environment sets ``GRADGEN_LONG=1``.
"""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("GRADGEN_LONG") == "1":
        return
    skip_long = pytest.mark.skip(reason="long test: set GRADGEN_LONG=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip_long)
