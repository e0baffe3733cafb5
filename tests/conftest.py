"""Shared test settings.

torch runs on one thread in the tests: the suite is made of many small ops, where threads add
overhead, and on a busy 2-core machine two threads per process oversubscribe the CPU badly.
"""

import torch

torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Restore one thread after every test: a test of `--threads` must not change the float
    results (and so the thresholds) of the tests that run after it."""
    yield
    torch.set_num_threads(1)
