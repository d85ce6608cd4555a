"""bioglom.bench_mechanisms: no mechanism for islands loops over columns in Python."""

from __future__ import annotations

import pytest

from bioglom.bench import config_for
from bioglom.bench_mechanisms import ARMS, block_truth, op_counts


@pytest.mark.parametrize("arm", list(ARMS))
def test_an_update_issues_as_many_tensor_operations_for_any_number_of_columns(arm):
    """A loop over columns in Python would issue more tensor operations for more columns: one
    update (forward, backward and optimiser step) issues exactly as many ATen calls on 4x4 as
    on 8x8 columns, for co-distillation and for every mechanism added for islands."""
    small = {"model.sharing": "unshared", "model.dim": 8, "model.hidden": 8, "settle.steps": 2}
    counts = [op_counts(config_for(n, **small, **ARMS[arm])) for n in (16, 64)]
    assert counts[0] == counts[1] > 0


def test_block_truth_labels_squares_of_columns():
    """The supervised arm's groups: 4x4 squares of columns, the same in every image."""
    truth = block_truth((8, 6), batch=2, device="cpu")
    grid = truth["obj"].reshape(2, 8, 6)
    assert grid[0, 0, 0] == grid[0, 3, 3] != grid[0, 4, 0] != grid[0, 0, 4]
    assert len(set(grid[1].reshape(-1).tolist())) == 4  # 2 x 2 blocks (the last ones partial)
    assert (grid[0] == grid[1]).all() and (truth["part"] == truth["obj"]).all()
