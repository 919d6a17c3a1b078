import pytest
import torch


@pytest.fixture
def float64():
    r"""Runs a test with float64 as the default dtype, for exactness checks."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
