"""Run under torchrun (2 CPU processes, gloo): the gathered InfoNCE equals the single-process
loss on the concatenated batch, and each rank's gradient equals its slice of the full gradient."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ml.spinefm.distributed import cleanup_distributed, init_distributed
from ml.spinefm.losses.infonce import ClipLoss, infonce


def main() -> None:
    rank, world, _ = init_distributed("gloo")
    torch.manual_seed(0)
    img_all = torch.randn(world * 3, 8)
    txt_all = torch.randn(world * 3, 8)
    local = slice(rank * 3, rank * 3 + 3)
    img = img_all[local].clone().requires_grad_(True)
    loss_fn = ClipLoss(0.1)
    loss = loss_fn(img, txt_all[local])
    loss.backward()
    # reference: one process, whole batch; DDP averages per-rank losses -> mean over ranks
    ref_img = img_all.clone().requires_grad_(True)
    scale = loss_fn.scale.detach()
    ref = infonce(F.normalize(ref_img, dim=-1), F.normalize(txt_all, dim=-1), scale)
    ref.backward()
    torch.testing.assert_close(loss.detach(), ref.detach(), atol=1e-5, rtol=1e-5)
    # the local embeddings get exactly their gradient of the full-batch loss
    torch.testing.assert_close(img.grad, ref_img.grad[local], atol=1e-5, rtol=1e-4)
    flag = torch.tensor(1.0)
    dist.all_reduce(flag)
    if rank == 0:
        print("GATHER_OK", world, float(loss.detach()), float(ref.detach()), int(flag))
    cleanup_distributed()


if __name__ == "__main__":
    main()
