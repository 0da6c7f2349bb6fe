import pytest
import torch

from graphrec.data import MultiBehaviorDataset


@pytest.fixture
def tiny():
    r"""3 users, 4 items, view + buy; numbers checkable by hand.

    view: u0-i0, u0-i1, u1-i1, u1-i2, u2-i3
    buy:  u0-i1, u1-i2, u2-i0
    test: u0-i2, u1-i0, u2-i3 (u2-i3 was viewed: 'visited')
    """
    return MultiBehaviorDataset(
        name='tiny', num_users=3, num_items=4, behaviors=('view', 'buy'),
        train={
            'view': torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 3]]),
            'buy': torch.tensor([[0, 1, 2], [1, 2, 0]]),
        },
        test=torch.tensor([[0, 1, 2], [2, 0, 3]]))
