import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
if "NLTK_DATA" not in os.environ and (SHARED / "nltk_data").is_dir():
    os.environ["NLTK_DATA"] = str(SHARED / "nltk_data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def multi30k_dir(shared_dir) -> Path:
    root = Path(os.environ.get("CTM_M3L_DATA", shared_dir / "data" / "multi30k"))
    if not (root / "comparable").is_dir():
        pytest.skip("Multi30k data not found")
    return root


def pytest_collection_modifyitems(config, items):
    """Markers by kind: ``slow`` for tests/slow/, ``data`` for tests reading ../shared
    (Multi30k, the shared photos); ``cpp`` and ``distributed`` are set by the tests."""
    for item in items:
        if HERE / "slow" in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
        if {"shared_dir", "multi30k_dir"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.data)
