"""Shared fixtures. Kernel tests never skip silently: without root they fail."""

from __future__ import annotations

import os
import shutil

import pytest

from nsutil import Namespaces

KERNEL_TOOLS = ("ip", "tc", "nft")


@pytest.fixture
def netns():
    """Make namespaces with ``netns.make(role)``; all are deleted after the test."""
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (they run inside namespaces they create)")
    missing = [tool for tool in KERNEL_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"kernel tests need {', '.join(missing)} (see .ci/run)")
    registry = Namespaces()
    try:
        yield registry
    finally:
        registry.cleanup()
