"""Tiny tensors: one intra-op thread is faster, and immune to oversubscription when other jobs share the cores."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
