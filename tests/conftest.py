"""Shared fixtures. Tests run real code on tiny inputs; torch uses one thread so two
pytest workers or helpers on a 2-core machine do not fight."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)
