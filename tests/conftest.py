import os
from pathlib import Path

import pytest

# Tests are sized for 2 cores; keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A tiny demo dataset (32 px) shared by tests that only read it."""
    from unetprune.data.demo import build_demo_dataset

    root = tmp_path_factory.mktemp("demo32")
    build_demo_dataset(root, image_size=32, n_train=6, n_val=2, n_test=4, progress=False)
    return root


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


