"""KoLeo regulariser: spread features uniformly over the sphere.

Paper: Sablayrolles et al., "Spreading vectors for similarity search" (ICLR 2019), the
Kozachenko-Leonenko differential-entropy estimator; used on the CLS token by DINOv2/DINOv3. It
penalises samples whose nearest neighbour in the batch is very close, which counteracts the
partial collapse typical of homogeneous data such as grey-scale MR slices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x: [B, D] features (L2-normalised inside). Returns -mean_i log(min_{j!=i} ||x_i - x_j||)."""
    x = F.normalize(x.float(), dim=-1, eps=eps)
    sim = x @ x.t()  # [B, B] cosine similarities
    sim.fill_diagonal_(-2.0)  # exclude self-matches
    nn_idx = sim.argmax(dim=1)  # [B] nearest neighbour = highest cosine similarity
    dist = (x - x[nn_idx]).norm(dim=-1)  # [B]
    return -torch.log(dist + eps).mean()
