"""A Gaussian mixture fitted to a VAE's latents after training: a prior whose samples land where images are.

A VAE's encoder rarely fills N(0, I) evenly: its posteriors cluster (flags here, faces there) and leave holes, and
noise drawn in a hole decodes to mush. Fitting a mixture of full-covariance Gaussians to the latents of the
training images and sampling from it instead ("ex-post density estimation", Ghosh et al., "From Variational to
Deterministic Autoencoders", ICLR 2020) keeps samples in the populated regions. Fitted by expectation-maximisation
in float64 with a small ridge on each covariance; stored next to the VAE as `prior.safetensors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

PRIOR_FILE = "prior.safetensors"


@dataclass(frozen=True)
class GaussianMixturePrior:
    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, D)
    cholesky: torch.Tensor  # (K, D, D), lower triangular factors of the covariances

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def components(self) -> int:
        return int(self.means.shape[0])

    @classmethod
    def fit(cls, points: torch.Tensor, components: int, *, iterations: int = 60, seed: int = 0,
            ridge: float = 1e-3) -> tuple[GaussianMixturePrior, float]:
        """Fit to (N, D) points: the mixture and the mean log-likelihood per point (nats) of the last step."""
        x = points.double()
        n, d = x.shape
        if n < components:
            raise ValueError(f"a mixture of {components} components needs at least as many points, got {n}")
        generator = torch.Generator().manual_seed(seed)
        scale = float(x.var(0).mean())
        means = x[torch.randperm(n, generator=generator)[:components]].clone()
        covariances = torch.eye(d, dtype=x.dtype).expand(components, d, d) * scale
        weights = torch.full((components,), 1.0 / components, dtype=x.dtype)
        eye = torch.eye(d, dtype=x.dtype) * ridge * scale
        log_likelihood = float("-inf")
        for _ in range(iterations):
            # E step: each point's responsibility of each component
            log_p = _log_densities(x, weights, means, torch.linalg.cholesky(covariances))  # (K, N)
            total = torch.logsumexp(log_p, 0)
            log_likelihood = float(total.mean())
            resp = torch.exp(log_p - total)  # (K, N)
            # M step: weighted means and covariances
            mass = resp.sum(1) + 1e-12
            weights = mass / n
            means = resp @ x / mass[:, None]
            centred = x[None] - means[:, None]  # (K, N, D)
            covariances = torch.einsum("kn,knd,kne->kde", resp, centred, centred) / mass[:, None, None] + eye
        prior = cls(weights.float(), means.float(), torch.linalg.cholesky(covariances).float())
        return prior, log_likelihood

    def sample(self, count: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """(count, D) draws; `temperature` scales the spread within the chosen component."""
        chosen = torch.multinomial(self.weights, count, replacement=True, generator=generator)
        noise = torch.randn(count, self.dim, generator=generator)
        return self.means[chosen] + temperature * (self.cholesky[chosen] @ noise[..., None])[..., 0]

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({"weights": self.weights.contiguous(), "means": self.means.contiguous(),
                   "cholesky": self.cholesky.contiguous()}, str(folder / PRIOR_FILE))

    @classmethod
    def load(cls, folder: Path) -> GaussianMixturePrior | None:
        """The prior stored with a model, or None when it has none."""
        path = folder / PRIOR_FILE
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        parts = load_file(str(path))
        return cls(parts["weights"].float(), parts["means"].float(), parts["cholesky"].float())


def _log_densities(x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """(K, N): log(weight_k · N(x_n; mean_k, L_k L_kᵀ))."""
    d = x.shape[1]
    solved = torch.linalg.solve_triangular(chol, (x[None] - means[:, None]).transpose(1, 2), upper=False)  # (K, D, N)
    mahalanobis = (solved**2).sum(1)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
    return torch.log(weights)[:, None] - 0.5 * (mahalanobis + log_det[:, None] + d * math.log(2 * math.pi))
