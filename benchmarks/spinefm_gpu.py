"""SpineFM on a GPU: training throughput and MFU, bf16 inference throughput, peak memory.

    .venv/bin/python benchmarks/spinefm_gpu.py --model base --train-batch 64 --infer-batch 256

Random inputs (the numbers are about the model and the device, not the data). Measures:
- SSL training step (student+teacher, 2 global + 8 local crops, DINO+iBOT+KoLeo) images/s and
  model FLOPs utilisation (MFU) against the device's dense bf16 peak (``--peak-tflops``; H100
  SXM 989, A100 312);
- ``embed``-path inference (CLS features, bf16 autocast, inference_mode) slices/s at batch 256;
- peak CUDA memory of each. Exits 0 with a message where no CUDA device exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def vit_flops_per_image(dim: int, depth: int, tokens: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs (multiply-add = 2) of a ViT on ``tokens`` tokens: QKV/proj/MLP + attention."""
    linear = 2 * tokens * depth * (4 * dim * dim + 2 * mlp_ratio * dim * dim)
    attention = 2 * depth * 2 * tokens * tokens * dim
    return linear + attention


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--infer-batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the device")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (run this where a GPU exists)")
        return 0
    from ml.spinefm import create_model, get_preset
    from ml.spinefm.augment import sample_masks
    from ml.spinefm.losses import DINOLoss, IBOTPatchLoss, koleo_loss, sinkhorn_knopp
    from ml.spinefm.ssl import SSLModel

    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    preset = get_preset(args.model)
    g, lsz, n_local, b = preset.img_size, preset.local_img_size, 8, args.train_batch
    results: dict[str, float | str] = {"device": torch.cuda.get_device_name(), "model": args.model}

    # -- training ------------------------------------------------------------------------------
    ssl = SSLModel(create_model(args.model), out_dim=65536, patch_out_dim=8192).to(dev)
    opt = torch.optim.AdamW([p for p in ssl.student.parameters()], lr=1e-4, fused=True)
    dino, ibot = DINOLoss(), IBOTPatchLoss()
    glob = torch.randn(2 * b, 1, g, g, device=dev)
    loc = torch.randn(n_local * b, 1, lsz, lsz, device=dev)
    n_patches = (g // 16) ** 2
    masks = sample_masks(2 * b, n_patches).to(dev)

    def train_step(ssl=ssl, opt=opt):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = ssl(glob, loc, masks)
            t_cls = sinkhorn_knopp(out.teacher_cls_logits.flatten(0, 1), 0.07).view(2, b, -1)
            t_patch = sinkhorn_knopp(out.teacher_patch_logits, 0.07)
            w = 1.0 / masks.sum(1, keepdim=True).clamp_min(1).expand_as(masks)[masks].float()
            loss = dino(out.student_cls_logits, t_cls) + ibot(out.student_patch_logits, t_patch, w)
            loss = loss + 0.1 * koleo_loss(out.student_cls[0])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ssl.update_teacher(0.996)

    for _ in range(3):
        train_step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / args.steps
    prefix = 1 + 4
    f_glob = vit_flops_per_image(preset.embed_dim, preset.depth, n_patches + prefix)
    f_loc = vit_flops_per_image(preset.embed_dim, preset.depth, (lsz // 16) ** 2 + prefix)
    # student: fwd+bwd (3x) on all crops; teacher: fwd (1x) on global crops; heads ignored
    flops = 3 * (2 * b * f_glob + n_local * b * f_loc) + 2 * b * f_glob
    results["train_images_per_s"] = b / dt  # source images (each = 2 global + 8 local crops)
    results["train_crops_per_s"] = (2 + n_local) * b / dt
    results["train_step_s"] = dt
    results["train_mfu"] = flops / dt / (args.peak_tflops * 1e12)
    results["train_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del train_step, ssl, opt
    torch.cuda.empty_cache()

    # -- inference (embed path) ------------------------------------------------------------------
    enc = create_model(args.model).to(dev).eval()
    x = torch.randn(args.infer_batch, 1, g, g, device=dev)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            enc(x)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(args.steps):
            enc(x)
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / args.steps
    results["infer_slices_per_s_bf16"] = args.infer_batch / dt
    results["infer_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
