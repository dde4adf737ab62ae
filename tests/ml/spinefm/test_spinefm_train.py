"""Configs, the training CLI on tiny DICOM data (all stages), resume, torchrun/gloo, embed_study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_fixtures import make_dataset

from ml.train.cli import main as train_main
from ml.train.config import AlignConfig, PretrainConfig, load_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "ml" / "configs"
SSL_SMALL = ["ssl.out_dim=64", "ssl.patch_out_dim=32", "ssl.head_hidden=32", "ssl.head_bottleneck=16"]


def test_every_yaml_config_resolves_to_its_dataclass():
    from ml.agents.report.config import ReportAgentConfig
    from ml.agents.train import AgentsTrainConfig

    paths = sorted(CONFIGS.rglob("*.yaml"))
    assert len(paths) >= 12, paths
    for path in paths:
        if path.parent.name == "agents":  # the agents' own configs (ml/configs/agents/)
            if path.stem == "agents":
                assert load_config(AgentsTrainConfig, path) is not None
            else:
                assert ReportAgentConfig.from_yaml(path).preset, path
            continue
        cls = PretrainConfig if path.stem in ("pretrain", "gram") else AlignConfig
        cfg = load_config(cls, path)
        assert cfg.optim.max_steps > 0, path


def test_overrides_are_typed_and_typos_fail():
    cfg = load_config(PretrainConfig, CONFIGS / "gram.yaml", ["optim.lr=1e-3", "ssl.mask_ratio=[0.2,0.4]"])
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.ssl.mask_ratio == (0.2, 0.4)
    assert cfg.ssl.gram_weight > 0  # inherited from gram.yaml over its _base_
    with pytest.raises(KeyError, match=r"optim\.lrr"):
        load_config(PretrainConfig, None, ["optim.lrr=1"])
    with pytest.raises(TypeError, match=r"optim\.max_steps"):
        load_config(PretrainConfig, None, ["optim.max_steps=many"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    manifest = make_dataset(root / "data", n_studies=10, slices=3)
    return root, [f"data.manifest={manifest}", f"data.cache_dir={root / 'cache'}", "data.num_workers=0"]


def _run(stage, cfg, out, args):
    assert train_main([stage, str(CONFIGS / "tiny" / f"{stage}.yaml"), f"run.out_dir={out}", *args]) == 0


@pytest.mark.slow
def test_all_stages_train_on_cpu_and_chain_through_their_outputs(data):
    from ml.spinefm.embed import embed_study
    from ml.spinefm.io import load_spinefm, read_config

    root, common = data
    small = [*common, "optim.max_steps=2", "optim.batch_size=4"]
    _run("pretrain", None, root / "pt1", [*small, *SSL_SMALL, "ssl.sequence_class=T1"])
    _run("pretrain", None, root / "pt2", [*small, *SSL_SMALL, "ssl.sequence_class=T2"])
    gram = [f"ssl.resume_from={root / 'pt1'}", f"ssl.gram_teacher={root / 'pt1'}"]
    _run("gram", None, root / "g1", [*small, *SSL_SMALL, "ssl.sequence_class=T1", *gram])
    _run("align", None, root / "al", [*small, f"t1_encoder={root / 'g1'}", f"t2_encoder={root / 'pt2'}"])
    _run("synthesizer", None, root / "sy", [*small, f"init_from={root / 'al'}", "model.router=scalar"])

    for run in ("pt1", "g1", "al", "sy"):
        ckpt = root / run / "checkpoint"
        assert {"model.safetensors", "config.json", "optimizer.pt"} <= {p.name for p in ckpt.iterdir()}
        assert read_config(ckpt)["train"]["optim"]["max_steps"] == 2
    assert (root / "pt1" / "encoder" / "model.safetensors").exists()
    assert list((root / "al" / "tb").iterdir())  # TensorBoard events

    fm = load_spinefm(root / "sy" / "final")
    assert fm.cfg.router == "scalar"
    # the synthesizer stage froze the encoders: they equal the align run's
    al = load_spinefm(root / "al" / "final")
    torch.testing.assert_close(fm.encoders["T1"].vit.cls_token, al.encoders["T1"].vit.cls_token)

    from ml.data.loader import StudyLoader, load_manifest
    from ml.data.preprocess import PreprocessConfig

    studies, base = load_manifest(common[0].split("=", 1)[1])
    loader = StudyLoader(base, PreprocessConfig(size=fm.img_size))
    a = embed_study(studies[0], fm, loader=loader)
    b = embed_study(studies[0], fm, loader=loader)
    np.testing.assert_array_equal(a.case, b.case)  # deterministic in eval
    assert [s.route for s in a.series] == ["T1", "T2", "synthesizer:scalar"]
    assert a.series[0].slices.shape == (3, 192)
    assert np.linalg.norm(a.case) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_training_with_gradient_accumulation_resumes_from_the_last_checkpoint(data):
    root, common = data
    args = [
        *common,
        *SSL_SMALL,
        "optim.batch_size=4",
        "optim.accum_steps=2",
        "run.ckpt_every=1",
        "ssl.sequence_class=T2",
    ]
    _run("pretrain", None, root / "res", [*args, "optim.max_steps=1"])
    _run("pretrain", None, root / "res", [*args, "optim.max_steps=2"])
    state = torch.load(root / "res" / "checkpoint" / "optimizer.pt", weights_only=False)
    assert state["step"] == 2


def _torchrun(args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_torchrun_two_process_gloo_gathered_infonce_matches_single_process():
    res = _torchrun([str(Path(__file__).with_name("dist_gather_check.py"))])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "GATHER_OK 2" in res.stdout


@pytest.mark.slow
def test_torchrun_two_process_align_stage_trains_with_ddp(data):
    root, common = data
    out = root / "ddp"
    args = [*common, "optim.max_steps=2", "optim.batch_size=2", "run.log_every=1", "run.threads=1"]
    res = _torchrun(["-m", "ml", "train", "align", str(CONFIGS / "tiny" / "align.yaml"), f"run.out_dir={out}", *args])
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads((out / "checkpoint" / "config.json").read_text())
    assert cfg["world_size"] == 2
    assert (out / "final" / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_two_process_pretrain_stage_trains_checkpoints_and_resumes(data, parallel):
    """DDP, and the FSDP2 ``fully_shard`` path used for ``large``, on 2 CPU processes (gloo)."""
    root, common = data
    out = root / f"dist_ssl_{parallel}"
    args = [*common, *SSL_SMALL, "optim.batch_size=2", "run.threads=1", f"run.parallel={parallel}"]
    cfg = str(CONFIGS / "tiny" / "pretrain.yaml")
    for steps in (1, 2):  # the second call resumes from the first one's checkpoint
        res = _torchrun(["-m", "ml", "train", "pretrain", cfg, f"run.out_dir={out}", *args, f"optim.max_steps={steps}"])
        assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed" in res.stderr + res.stdout
    assert (out / "encoder" / "model.safetensors").exists()
    shards = sorted(p.name for p in (out / "checkpoint").glob("optimizer.rank*.pt"))
    assert shards == (["optimizer.rank0.pt", "optimizer.rank1.pt"] if parallel == "fsdp" else [])
