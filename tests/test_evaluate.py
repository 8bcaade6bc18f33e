"""Weighted k-NN on toy sets with known answers."""

import torch

from vicreg.evaluate import knn_accuracy


def test_knn_on_separated_clusters_is_perfect():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10
    train_y = torch.arange(4).repeat_interleave(25)
    train_x = centres[train_y] + torch.randn(100, 4, generator=g)
    test_y = torch.arange(4).repeat(5)
    test_x = centres[test_y] + torch.randn(20, 4, generator=g)
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(1, 20)) == {1: 100.0, 20: 100.0}


def test_weighted_vote_by_hand():
    # query [1, 0]; neighbours: one of class 0 at cosine 1, two of class 1 at cosine 0.6
    train_x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [-1.0, 0.0]])
    train_y = torch.tensor([0, 1, 1, 0])
    test_x, test_y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    # T = 0.1: exp(10) = 22026 > 2 * exp(6) = 807: class 0 wins with k = 3
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(3,), temperature=0.1) == {3: 100.0}
    # T = 10: exp(0.1) = 1.105 < 2 * exp(0.06) = 2.12: class 1 wins
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(3,), temperature=10.0) == {3: 0.0}


def test_unlabelled_bank_entries_are_ignored_and_k_is_capped():
    train_x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    train_y = torch.tensor([-1, 1, 0])
    acc = knn_accuracy(train_x, train_y, torch.tensor([[1.0, 0.0]]), torch.tensor([1]), ks=(1, 200))
    assert acc == {1: 100.0, 200: 100.0}


def test_chunking_does_not_change_the_answer():
    g = torch.Generator().manual_seed(1)
    tx, ty = torch.randn(200, 8, generator=g), torch.randint(0, 5, (200,), generator=g)
    qx, qy = torch.randn(50, 8, generator=g), torch.randint(0, 5, (50,), generator=g)
    assert knn_accuracy(tx, ty, qx, qy, chunk=7) == knn_accuracy(tx, ty, qx, qy, chunk=1024)
