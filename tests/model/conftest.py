"""Model tests: one thread (CI has 2 shared cores) and a fixed seed for every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_fixed_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
