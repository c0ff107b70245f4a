"""The fitted latent prior: EM finds the clusters, samples follow them, and it round-trips through its file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.latent_prior import GaussianMixturePrior


def two_clusters() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    left = torch.randn(300, 2, generator=g) * 0.5 + torch.tensor([-5.0, 0.0])
    right = torch.randn(700, 2, generator=g) * torch.tensor([0.2, 1.0]) + torch.tensor([5.0, 2.0])
    return torch.cat([left, right])


def test_em_finds_the_clusters_their_weights_and_shapes() -> None:
    prior, log_likelihood = GaussianMixturePrior.fit(two_clusters(), 2, seed=1)
    order = prior.means[:, 0].argsort()
    means, weights = prior.means[order], prior.weights[order]
    assert torch.allclose(means, torch.tensor([[-5.0, 0.0], [5.0, 2.0]]), atol=0.15)
    assert torch.allclose(weights, torch.tensor([0.3, 0.7]), atol=0.02)
    covariance = prior.cholesky[order[1]] @ prior.cholesky[order[1]].T
    # the variances, plus the ridge (1e-3 of the mean variance of the data, ~0.013 here)
    assert torch.allclose(covariance.diagonal(), torch.tensor([0.053, 1.013]), atol=0.01, rtol=0.1)
    assert log_likelihood > -3.0  # two tight clusters; one wide Gaussian over both scores about −4.3


def test_samples_follow_the_mixture_reproducibly_and_shrink_with_temperature() -> None:
    prior, _ = GaussianMixturePrior.fit(two_clusters(), 2, seed=1)
    samples = prior.sample(4000, torch.Generator().manual_seed(3))
    assert abs((samples[:, 0] > 0).float().mean().item() - 0.7) < 0.03
    assert torch.equal(samples, prior.sample(4000, torch.Generator().manual_seed(3)))
    centres = prior.sample(10, torch.Generator().manual_seed(3), temperature=0.0)
    assert all(any(torch.allclose(c, m) for m in prior.means) for c in centres)


def test_it_round_trips_through_its_file_and_a_folder_without_one_has_none(tmp_path: Path) -> None:
    prior, _ = GaussianMixturePrior.fit(two_clusters(), 2, seed=1)
    prior.save(tmp_path)
    loaded = GaussianMixturePrior.load(tmp_path)
    assert loaded is not None and torch.equal(loaded.cholesky, prior.cholesky)
    assert GaussianMixturePrior.load(tmp_path / "elsewhere") is None
    with pytest.raises(ValueError, match="needs at least as many points"):
        GaussianMixturePrior.fit(torch.zeros(3, 2), 4)
