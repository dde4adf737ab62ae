"""Every registered encoder, the SSL meta-arch, pooling, synthesizer and SpineFM at tiny size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.data.types import SeriesData, StudyData
from ml.spinefm import create_model, list_models
from ml.spinefm.io import load_spinefm, save_weights
from ml.spinefm.model import SpineFM, SpineFMConfig
from ml.spinefm.pooling import GatedAttentionPool, pad_bags
from ml.spinefm.ssl import SSLModel
from ml.spinefm.synthesizer import Synthesizer
from ml.spinefm.weights import load_encoder_weights

SHRINK = {"embed_dim": 64, "depth": 2, "num_heads": 2, "img_size": 32, "local_img_size": 16}


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    model = create_model(name, **SHRINK)
    x = torch.randn(2, 1, 32, 32, requires_grad=False)
    out = model.forward_tokens(x, masks=torch.tensor([[True, False, False, True]] * 2))
    assert out.cls.shape == (2, 64)
    assert out.registers.shape == (2, 4, 64)  # DINOv3: 4 register tokens
    assert out.patches.shape == (2, 4, 64)
    out.cls.sum().backward()
    assert model.mask_token.grad is not None
    assert all(p.grad is not None for p in model.vit.blocks[0].parameters())


def test_presets_keep_the_paper_sizes():
    from ml.spinefm.registry import get_preset

    large = get_preset("large")
    assert (large.embed_dim, large.depth, large.num_heads) == (1024, 24, 16)
    assert get_preset("tiny").embed_dim < get_preset("small").embed_dim


def test_unknown_model_and_override_fail_clearly():
    with pytest.raises(KeyError, match="known"):
        create_model("huge-ish")
    with pytest.raises(TypeError, match="unknown overrides"):
        create_model("tiny", widht=3)


def test_variable_input_size_uses_rope_without_position_tables():
    model = create_model("tiny").eval()
    assert model(torch.randn(1, 1, 48, 48)).shape == (1, 192)
    assert model(torch.randn(1, 1, 96, 64)).shape == (1, 192)


def test_encoder_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    a = create_model("tiny").eval()
    save_weights(a, tmp_path / "enc", {"preset": "tiny"})
    b = create_model("tiny", checkpoint=tmp_path / "enc" / "model.safetensors").eval()
    x = torch.randn(2, 1, 96, 96)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_foreign_dinov3_rgb_checkpoint_loads_into_single_channel_model(tmp_path):
    rgb = create_model("tiny", in_chans=3)
    sd = {k.removeprefix("vit."): v for k, v in rgb.state_dict().items() if k != "mask_token"}
    sd["storage_tokens"] = sd.pop("reg_token")  # Meta's name for register tokens
    torch.save(sd, tmp_path / "dinov3.pth")
    grey = create_model("tiny", in_chans=1)
    report = load_encoder_weights(grey, tmp_path / "dinov3.pth")
    assert any("summed" in n for n in report.notes)
    torch.testing.assert_close(grey.vit.reg_token, rgb.vit.reg_token)


def test_strict_loading_reports_missing_and_unexpected_keys(tmp_path):
    sd = {k: v for k, v in create_model("tiny").state_dict().items() if "blocks.3" not in k}
    sd["vit.extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match=r"missing \(\d+\).*blocks\.3"):
        create_model("tiny", checkpoint=tmp_path / "bad.pth")


def test_ssl_model_outputs_and_ema_update():
    ssl = SSLModel(create_model("tiny"), out_dim=32, patch_out_dim=16, head_hidden=32, head_bottleneck=8)
    g = torch.randn(4, 1, 96, 96)  # 2 views x B=2
    loc = torch.randn(4, 1, 48, 48)  # 2 local crops x B=2
    masks = torch.zeros(4, 36, dtype=torch.bool)
    masks[:, :5] = True
    out = ssl(g, loc, masks)
    assert out.student_cls_logits.shape == (4, 2, 32)
    assert out.teacher_cls_logits.shape == (2, 2, 32)
    assert out.student_patch_logits.shape == out.teacher_patch_logits.shape == (20, 16)
    assert not out.teacher_cls_logits.requires_grad
    t_before = ssl.teacher["backbone"].vit.cls_token.clone()
    with torch.no_grad():
        ssl.student["backbone"].vit.cls_token.add_(1.0)
    ssl.update_teacher(0.9)
    torch.testing.assert_close(ssl.teacher["backbone"].vit.cls_token, t_before + 0.1)


def test_gated_attention_pool_ignores_padding():
    pool = GatedAttentionPool(8, 4)
    a, b = torch.randn(3, 8), torch.randn(1, 8)
    x, mask = pad_bags([a, b])
    pooled, w = pool(x, mask)
    assert w[1, 1:].abs().sum() == 0
    torch.testing.assert_close(pooled[1], b[0])
    torch.testing.assert_close(w[0].sum(), torch.tensor(1.0))


@pytest.mark.parametrize("router", ["scalar", "conditioned"])
def test_synthesizer_mixes_both_encoders_and_trains_only_the_router(router):
    t1, t2 = create_model("tiny"), create_model("tiny")
    synth = Synthesizer(t1.depth, t1.embed_dim, router)
    out, w = synth(t1, t2, torch.randn(3, 1, 96, 96))
    assert out.cls.shape == (3, 192)
    assert w.shape == (3, t1.depth + 2, 2)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, t1.depth + 2))
    torch.testing.assert_close(w, torch.full_like(w, 0.5))  # both start at an even mixture
    out.cls.sum().backward()
    assert all(p.grad is not None for p in synth.parameters() if p.requires_grad)


def test_synthesizer_with_weight_one_reproduces_the_t1_encoder():
    t1, t2 = create_model("tiny").eval(), create_model("tiny").eval()
    synth = Synthesizer(t1.depth, t1.embed_dim, "scalar")
    with torch.no_grad():
        synth.router.logits.fill_(50.0)  # sigmoid -> 1: all T1
    x = torch.randn(2, 1, 96, 96)
    torch.testing.assert_close(synth(t1, t2, x)[0].cls, t1(x), atol=1e-5, rtol=1e-5)


def test_conditioned_router_can_route_inputs_differently():
    t1, t2 = create_model("tiny"), create_model("tiny")
    synth = Synthesizer(t1.depth, t1.embed_dim, "conditioned")
    for mlp in synth.router.mlps:
        torch.nn.init.normal_(mlp[-1].weight, std=1.0)
    _, w = synth(t1, t2, torch.cat([torch.zeros(1, 1, 96, 96), torch.ones(1, 1, 96, 96) * 3]))
    assert (w[0] - w[1]).abs().max() > 1e-3


def _studies():
    rng = np.random.default_rng(0)
    px = lambda n: rng.random((n, 96, 96), dtype=np.float32)  # noqa: E731
    first = [SeriesData("a", "T1", px(3)), SeriesData("b", "T2", px(2)), SeriesData("c", "other", px(2))]
    return [StudyData("1", "p1", first, "r1"), StudyData("2", "p2", [SeriesData("d", "T2", px(4))], "r2")]


def test_spinefm_forward_gives_case_embeddings_per_class_and_routes():
    model = SpineFM(SpineFMConfig(embed_dim=32, pool_hidden=16))
    out = model(_studies())
    assert out.case["all"].shape == (2, 32)
    assert out.valid["T1"].tolist() == [True, False]
    assert out.routes == [["T1", "T2", "synthesizer:conditioned"], ["T2"]]
    assert out.slices[0][0].shape == (3, 192)
    assert out.route_weights[0][2].shape == (2, 6, 2)


def test_spinefm_checkpoint_round_trip_gives_identical_embeddings(tmp_path):
    from ml.spinefm.embed import embed_studies

    cfg = SpineFMConfig(embed_dim=32, pool_hidden=16, router="scalar")
    model = SpineFM(cfg).eval()
    save_weights(model, tmp_path / "fm", {"model": cfg.to_dict()})
    loaded = load_spinefm(tmp_path / "fm")
    a, b = embed_studies(_studies(), model), embed_studies(_studies(), loaded)
    np.testing.assert_array_equal(a[0].case, b[0].case)
    np.testing.assert_array_equal(a[1].series[0].slices, b[1].series[0].slices)
