"""Shared fixtures: the real data beside the project, tiny seeded settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PHYSGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real Geant4/N-body/micro-CT files); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a fresh clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests are tiny: one intra-op thread avoids oversubscribing CI's 2 cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
