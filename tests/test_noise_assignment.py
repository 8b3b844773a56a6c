"""Immiscible noise assignment: the least-distance pairing of a batch's noise with its images."""

import itertools

import numpy as np
import pytest
import torch

from lab6.config import TrainConfig
from lab6.diffusion import make_noise_scheduler, training_loss
from lab6.model import ConditionalUNet
from lab6.noise_assignment import immiscible_noise, linear_assignment
from tests.test_model import TINY


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_the_assignment_is_the_least_total_cost_of_every_permutation(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        cost = rng.normal(size=(n, n))
        column = linear_assignment(cost)
        best = min(cost[np.arange(n), list(p)].sum() for p in itertools.permutations(range(n)))
        assert sorted(column.tolist()) == list(range(n))
        assert cost[np.arange(n), column].sum() == pytest.approx(best, abs=1e-9)


def test_ties_and_a_non_square_matrix():
    assert sorted(linear_assignment(np.ones((4, 4))).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="square"):
        linear_assignment(np.ones((3, 4)))


def test_immiscible_noise_is_the_same_samples_nearer_to_their_images():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(16, 3, 8, 8, generator=generator)
    assigned = immiscible_noise(images, noise)
    order = [int((noise.flatten(1) == row).all(dim=1).nonzero()) for row in assigned.flatten(1)]
    assert sorted(order) == list(range(16)) and torch.equal(assigned, noise[order])

    def total(n):
        return (images - n).flatten(1).norm(dim=1).sum()

    assert total(assigned) < total(noise)
    # an image that is one of the noise samples gets that sample
    images[3] = noise[11]
    assert torch.equal(immiscible_noise(images, noise)[3], noise[11])


def test_the_loss_with_it_draws_the_same_random_numbers():
    """The assignment draws nothing: a run keeps its random stream (and exact resume) with it."""
    torch.manual_seed(0)
    model = ConditionalUNet(**TINY).eval()
    scheduler = make_noise_scheduler(100, "cosine", "v")
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    conditions = torch.zeros(4, 24)
    conditions[:, 0] = 1
    generators = [torch.Generator().manual_seed(0) for _ in range(2)]
    with torch.no_grad():
        plain = training_loss(model, images, conditions, scheduler, generator=generators[0])
        immiscible = training_loss(model, images, conditions, scheduler, generator=generators[1],
                                   noise_assignment="immiscible")
    assert torch.equal(generators[0].get_state(), generators[1].get_state())
    assert not torch.equal(plain, immiscible)
    with pytest.raises(ValueError, match="noise_assignment must be one of random, immiscible, got 'sorted'"):
        training_loss(model, images, conditions, scheduler, noise_assignment="sorted")


def test_the_recipe_checks_the_field():
    with pytest.raises(ValueError, match="noise_assignment"):
        TrainConfig(noise_assignment="sorted")
