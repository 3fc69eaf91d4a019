"""``torch_threads``: the one place that sets torch's intra-op thread count for a block."""

import pytest
import torch

from videoglore.threads import torch_threads


def test_torch_threads_sets_the_count_and_restores_the_callers():
    before = torch.get_num_threads()
    with torch_threads(before + 2):
        assert torch.get_num_threads() == before + 2
        with torch_threads(1):  # nested: each block restores what it found
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == before + 2
    assert torch.get_num_threads() == before


def test_torch_threads_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(KeyboardInterrupt), torch_threads(before + 1):
        raise KeyboardInterrupt
    assert torch.get_num_threads() == before
