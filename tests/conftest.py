"""Shared test setup. Tests run real code on tiny inputs.

torch uses one thread here and in every subprocess a test starts (OMP_NUM_THREADS is
inherited): the machine's two vCPUs behave like one core, where two threads per process
only contend."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)
