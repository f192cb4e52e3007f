"""Shared setup: import the binding from the source tree and fail loudly if the library is missing."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Bindings" / "python"))

import quantkit  # noqa: E402


def pytest_configure(config):
    try:
        quantkit.library_path()
    except OSError as exc:  # LibraryNotFoundError, VersionMismatchError
        raise pytest.UsageError(f"the Python tests need libquantkit: {exc}") from None


def pytest_report_header(config):
    return (f"quantkit {quantkit.version()} from {quantkit.library_path()}, kernels "
            f"{quantkit.kernel_variant()} (QUANTKIT_KERNELS={os.environ.get('QUANTKIT_KERNELS', '')}), "
            f"{quantkit.get_num_threads()} threads")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
