"""Shared test helpers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
#: The paper's text (its tables are the truth tests/test_paper_tables.py checks paper.py against).
SHARED_PAPER = REPO.parent / "shared" / "paper" / "decoupling-adaptation-meta-optimizers.txt"


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    """Tests run on 2-core CI machines: keep torch from oversubscribing them."""
    torch.set_num_threads(1)
    yield


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the checkout, or a skip that says where they were looked for."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (a fresh clone has none; "
                    f"generated fixtures cover the formats)")
    return SHARED_DATA
