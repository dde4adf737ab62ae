"""The maths of each SpineFM loss, checked against hand or brute-force computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ml.spinefm.losses import ClipLoss, DINOLoss, IBOTPatchLoss, gram_loss, infonce, koleo_loss, sinkhorn_knopp


def test_sinkhorn_rows_sum_to_one_and_columns_to_batch_over_prototypes():
    logits = torch.randn(32, 8) * 3
    q = sinkhorn_knopp(logits, temperature=0.5, n_iters=200)
    assert q.shape == (32, 8)
    torch.testing.assert_close(q.sum(1), torch.ones(32))
    torch.testing.assert_close(q.sum(0), torch.full((8,), 32 / 8), rtol=1e-3, atol=1e-3)


def test_sinkhorn_balances_a_collapsed_teacher():
    logits = torch.zeros(16, 4)
    logits[:, 0] = 5.0  # every sample prefers prototype 0
    q = sinkhorn_knopp(logits, temperature=1.0, n_iters=100)
    assert q.sum(0).max() < 4.1  # no prototype takes more than its share


def _sinkhorn_rank(rank: int, world: int, init_file: str, logits: torch.Tensor, out_dir: str) -> None:
    """One gloo rank: Sinkhorn-Knopp on its shard of the batch, targets saved for the parent."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shard = logits.chunk(world)[rank]
        torch.save(sinkhorn_knopp(shard, temperature=0.04, n_iters=3), f"{out_dir}/q{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_sinkhorn_equals_single_process_on_the_concatenated_batch(tmp_path):
    """Two gloo ranks whose shards have different maxima (rank 1's logits are shifted up) must
    produce exactly the targets of one process on the whole batch: the exponent offset is global."""
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 12, generator=g) * 0.3
    logits[8:] += 0.25  # at temperature 0.04 a per-rank max would rescale rank 1 by exp(~6)
    ref = sinkhorn_knopp(logits, temperature=0.04, n_iters=3)
    mp.spawn(_sinkhorn_rank, args=(2, str(tmp_path / "init"), logits, str(tmp_path)), nprocs=2, join=True)
    q = torch.cat([torch.load(tmp_path / f"q{r}.pt") for r in range(2)])
    torch.testing.assert_close(q, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.sum(1), torch.ones(16))


def test_dino_loss_skips_same_view_pairs_and_matches_hand_computation():
    s = torch.randn(3, 4, 5)  # 2 global + 1 local
    t = torch.softmax(torch.randn(2, 4, 5), -1)
    loss = DINOLoss(student_temp=0.1)(s, t)
    log_p = F.log_softmax(s / 0.1, -1)
    pairs = [(0, 1), (1, 0), (2, 0), (2, 1)]
    expected = sum(-(t[ti] * log_p[si]).sum(-1).mean() for si, ti in pairs) / len(pairs)
    torch.testing.assert_close(loss, expected)


def test_ibot_loss_weights_each_image_equally():
    s = torch.randn(5, 6)
    t = torch.softmax(torch.randn(5, 6), -1)
    w = torch.tensor([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])  # image A: 2 patches, image B: 3 patches
    ce = -(t * F.log_softmax(s / 0.1, -1)).sum(-1)
    expected = (ce[:2].mean() + ce[2:].mean()) / 2
    torch.testing.assert_close(IBOTPatchLoss(0.1)(s, t, w), expected)


def test_koleo_matches_brute_force_nearest_neighbour():
    x = torch.randn(10, 7)
    xn = F.normalize(x, dim=-1)
    expected = 0.0
    for i in range(10):
        d = min((xn[i] - xn[j]).norm().item() for j in range(10) if j != i)
        expected -= math.log(d + 1e-8)
    assert koleo_loss(x).item() == pytest.approx(expected / 10, rel=1e-5)


def test_koleo_is_lower_for_spread_out_features():
    spread = torch.eye(8)
    clumped = torch.eye(8) * 0.01 + 1.0
    assert koleo_loss(spread) < koleo_loss(clumped)


def test_gram_loss_is_zero_for_identical_features_and_positive_otherwise():
    x = torch.randn(2, 9, 16)
    assert gram_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert gram_loss(x * 3.0, x).item() == pytest.approx(0.0, abs=1e-6)  # scale invariant
    assert gram_loss(torch.randn(2, 9, 16), x).item() > 1e-3


def test_infonce_matches_hand_computation():
    img = F.normalize(torch.randn(3, 4), dim=-1)
    txt = F.normalize(torch.randn(3, 4), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.t()
    expected = 0.0
    for i in range(3):
        expected += -torch.log_softmax(logits[i], 0)[i] / 6  # image -> text
        expected += -torch.log_softmax(logits[:, i], 0)[i] / 6  # text -> image
    torch.testing.assert_close(infonce(img, txt, scale), expected)


def test_infonce_is_symmetric_in_image_and_text():
    img = F.normalize(torch.randn(5, 8), dim=-1)
    txt = F.normalize(torch.randn(5, 8), dim=-1)
    s = torch.tensor(7.0)
    torch.testing.assert_close(infonce(img, txt, s), infonce(txt, img, s))


def test_infonce_invalid_pairs_are_neither_queries_nor_candidates():
    img = F.normalize(torch.randn(4, 8), dim=-1)
    txt = F.normalize(torch.randn(4, 8), dim=-1)
    valid = torch.tensor([True, False, True, True])
    keep = valid.nonzero().squeeze(1)
    s = torch.tensor(5.0)
    torch.testing.assert_close(infonce(img, txt, s, valid), infonce(img[keep], txt[keep], s))


def test_clip_loss_temperature_is_learnable_and_perfect_pairs_score_low():
    loss_fn = ClipLoss(init_temperature=0.07)
    x = torch.eye(6)
    good = loss_fn(x, x)
    bad = loss_fn(x, x.roll(1, 0))
    assert good < bad
    bad.backward()
    assert loss_fn.log_scale.grad is not None
