"""``ReportAgent``: projector + decoder (+ LoRA) + tokenizer, with save/load and generation.

Sequence fed to the decoder (one study)::

    [bos] "<image>" [64 projector tokens] "</image> <region>..</region> <classification>..
    <localization>.. <similar_case_report>..</similar_case_report> <template>..</template> <report>"
    [target report tokens] "<end_of_report>" [eos]

Only the report tokens are scored in training (labels -100 elsewhere). ``forward`` returns
logits; the loss lives in ``loss.py``. Artifact folder: ``config.json``, ``projector.safetensors``,
``tokenizer/``, ``decoder/`` (tiny preset only: our from-scratch weights), ``adapter/`` (peft LoRA),
``meta.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from ml.agents.report.config import ReportAgentConfig
from ml.agents.report.decoders import load_pretrained_decoder
from ml.agents.report.lookup import greedy_with_prompt_lookup
from ml.agents.report.loss import IGNORE
from ml.agents.report.projector import AttentionPoolProjector
from ml.agents.report.prompt import prompt_parts, split_sections, writer_text
from ml.agents.report.types import GeneratedReport, ReportInputs
from ml.agents.report.vocab import ReportVocabulary, restrict_decoder

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import GenerationMixin
    from typing_extensions import TypeIs

    from ml.agents.analysis import StudyAnalysis
    from ml.agents.features import StudyFeatures
    from ml.agents.protocol import RunContext


def _has_adapters(decoder: PreTrainedModel | PeftModel) -> TypeIs[PeftModel]:
    """Whether peft's LoRA wrapper is on the decoder; asked by attribute so that peft is imported
    only where adapters are added or loaded."""
    return hasattr(decoder, "peft_config")


class ReportAgent(nn.Module):
    """The Medical Report Agent; also the report family of the pipeline
    (``ml.agents.protocol.AgentFamily``): ``run`` writes its draft or raises, and the pipeline
    falls back to the template draft when it raises (``Pipeline._draft``)."""

    name = "report"
    # ``run`` drafts a batch in one call (one left-padded ``generate_many``); one study alone is
    # drafted with prompt lookup (``Pipeline._draft_batch`` hands it the batch)
    per_study = False

    def __init__(
        self,
        cfg: ReportAgentConfig,
        decoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        vocab: ReportVocabulary | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder: PreTrainedModel | PeftModel = decoder  # a PeftModel once LoRA adapters are on
        self.tokenizer = tokenizer
        # a pretrained decoder writes over its report vocabulary (vocab.py); prompts keep every token
        self.vocab = vocab
        self.full_embed = restrict_decoder(decoder, vocab) if vocab is not None else self._embeddings()
        self.hidden_size = self.full_embed.embedding_dim
        self.projector = AttentionPoolProjector(cfg.projector, self.hidden_size)
        self.meta: dict[str, Any] = {}

    # ----- parameters and stages -------------------------------------------------------------
    @property
    def has_lora(self) -> bool:
        return _has_adapters(self.decoder)

    def add_lora(self) -> None:
        """Wrap the decoder with trainable LoRA adapters (peft); the base weights stay frozen."""
        from peft import LoraConfig, get_peft_model

        if self.has_lora:
            return
        lc = self.cfg.lora
        peft_cfg = LoraConfig(
            r=lc.r,
            lora_alpha=lc.alpha,
            lora_dropout=lc.dropout,
            target_modules=list(lc.target_modules),
            task_type="CAUSAL_LM",
        )
        self.decoder = get_peft_model(self.decoder, peft_cfg)

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.decoder.named_parameters() if "lora_" in n]

    def set_stage(self, stage: int) -> None:
        """1: projector only; 2: projector + LoRA adapters (stage 0, the tiny decoder's text LM,
        is trained outside the agent: ``pretrain.py``).

        Stage 2 makes the adapters trainable explicitly: the paper's released code froze them.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        if stage in (1, 2):
            for p in self.projector.parameters():
                p.requires_grad_(True)
            if stage == 2:
                self.add_lora()
                for p in self.lora_parameters():
                    p.requires_grad_(True)
        else:
            raise ValueError(f"unknown training stage {stage}")

    # ----- inputs -----------------------------------------------------------------------------
    def _embeddings(self) -> nn.Embedding:
        """The decoder's token embedding table: transformers types it as ``nn.Module``, and every
        preset's decoder (Llama, Gemma-3's scaled subclass) has an ``nn.Embedding`` there."""
        return cast(nn.Embedding, self.decoder.get_input_embeddings())

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, inp: ReportInputs) -> tuple[list[int], list[int]]:
        """Token ids before and after the 64 image tokens; the similar report is cut to fit the budget."""
        pre = ([self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []) + self._ids("<image>")
        head, sim, tail = prompt_parts(inp.conditions, inp.similar_report, inp.region, inp.use_agent_tokens)
        h, t = self._ids(head), self._ids(tail)
        room = self.cfg.max_prompt_tokens - len(pre) - self.cfg.projector.n_queries - len(h) - len(t)
        s = self._ids(sim)[: max(room, 0)] if sim else []
        return pre, h + s + t

    def target_ids(self, text: str) -> list[int]:
        """The tokens a report teaches: its writer's part (``prompt.writer_text``), the end marker, EOS."""
        ids = self._ids(writer_text(text) + "\n" + self.cfg.end_marker)[: self.cfg.max_target_tokens]
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def build_batch(
        self, items: Sequence[ReportInputs], targets: list[str] | None = None, left_pad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """inputs_embeds [B, T, H], attention_mask [B, T], labels [B, T] (right-padded for
        training; ``left_pad`` for batched generation, where every row must end at the prompt).
        Labels are the decoder's output ids: local ids of the report vocabulary when it has one
        (a target token outside it is not scored)."""
        device = self.projector.queries.device
        feats = self.projector.pack([(x.t1_slices, x.t2_slices) for x in items], device)
        img = self.projector(*feats)  # [B, Q, H]
        emb = self.full_embed
        rows, labels = [], []
        for i, x in enumerate(items):
            pre, post = self.prompt_ids(x)
            tgt = self.target_ids(targets[i]) if targets is not None else []
            ids_pre = torch.tensor(pre, device=device, dtype=torch.long)
            ids_post = torch.tensor(post + tgt, device=device, dtype=torch.long)
            e = torch.cat([emb(ids_pre), img[i].to(emb.weight.dtype), emb(ids_post)], dim=0)  # [T_i, H]
            rows.append(e)
            n_prompt = len(pre) + img.shape[1] + len(post)
            out_ids = self.vocab.local(tgt, missing=IGNORE) if self.vocab is not None else tgt
            labels.append([IGNORE] * n_prompt + out_ids)
        t_max = max(r.shape[0] for r in rows)
        b = len(rows)
        embeds = rows[0].new_zeros(b, t_max, self.hidden_size)
        mask = torch.zeros(b, t_max, dtype=torch.long, device=device)
        lab = torch.full((b, t_max), IGNORE, dtype=torch.long, device=device)
        for i, r in enumerate(rows):
            span = slice(t_max - r.shape[0], t_max) if left_pad else slice(0, r.shape[0])
            embeds[i, span] = r
            mask[i, span] = 1
            lab[i, span] = torch.tensor(labels[i], device=device)
        return embeds, mask, lab

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """inputs_embeds [B, T, H], attention_mask [B, T] -> logits [B, T, V]."""
        return self.decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False).logits

    # ----- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, inputs: ReportInputs, max_new_tokens: int | None = None) -> GeneratedReport:
        """Greedy draft with a token budget; stops at the end-of-report marker or EOS."""
        return self.generate_many([inputs], max_new_tokens)[0]

    @torch.no_grad()
    def generate_many(self, items: Sequence[ReportInputs], max_new_tokens: int | None = None) -> list[GeneratedReport]:
        """Greedy drafts for several studies in one left-padded batch (one matrix product per
        layer and step instead of one per study: the throughput of a drafting worker or a
        benchmark); each row stops at the end marker or EOS. ``seconds`` is the batch's time."""
        budget = int(max_new_tokens if max_new_tokens is not None else self.cfg.max_new_tokens)
        if budget < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {budget}")
        if not items:
            return []
        was_training = self.training
        self.eval()
        t0 = time.perf_counter()
        embeds, mask, _ = self.build_batch(items, left_pad=True)
        marker = self._marker_id()
        stop_ids = [i for i in (self.tokenizer.eos_token_id, marker) if i is not None]
        pad = self.tokenizer.pad_token_id
        if self.vocab is not None:  # the decoder speaks local ids
            stop_ids = [i for i in self.vocab.local(stop_ids, missing=-1) if i >= 0]
            pad = self.vocab.local([pad], missing=stop_ids[0] if stop_ids else 0)[0] if pad is not None else None
        kwargs: dict[str, Any] = {"do_sample": False, "eos_token_id": stop_ids, "pad_token_id": pad}
        # one study (a drafting worker, the demo): prompt lookup decoding, the same greedy draft in
        # fewer passes (lookup.py)
        lookup = self.cfg.prompt_lookup_tokens if len(items) == 1 else 0
        text_stop = _TextStop(self, self.cfg.end_marker, lookup) if marker is None else None
        if text_stop is not None:  # multi-token marker (pretrained vocabularies): stop on its text
            kwargs["stopping_criteria"] = StoppingCriteriaList([text_stop])
        if lookup > 0:
            source = self._lookup_ids(items[0], embeds.shape[1])
            out = greedy_with_prompt_lookup(
                self.decoder, embeds, mask, source, budget, lookup, self.cfg.prompt_lookup_ngram, set(stop_ids),
                text_stop.hit if text_stop is not None else None,
            )  # fmt: skip
        else:
            # PreTrainedModel's type has no generate: every decoder here is a transformers causal LM
            # (a GenerationMixin) or peft's PeftModelForCausalLM, whose generate forwards to one.
            decoder = cast("GenerationMixin", self.decoder)
            out = decoder.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=budget, **kwargs)
        seconds = time.perf_counter() - t0
        drafts = []
        for row in out.tolist():  # the new tokens only
            new = self._trim(row, set(stop_ids), pad)
            text = self.decode(new).split(self.cfg.end_marker)[0]
            for tok in (self.tokenizer.eos_token, self.tokenizer.pad_token):
                if tok:
                    text = text.split(tok)[0]
            text = text.strip()
            drafts.append(GeneratedReport(text, split_sections(text), len(new), seconds))
        self.train(was_training)
        return drafts

    def _lookup_ids(self, item: ReportInputs, length: int) -> list[int]:
        """The prompt as the decoder's output ids, one per prompt embedding: where prompt lookup
        searches for the draft's last words; -1 for the image tokens and for prompt tokens outside
        the report vocabulary (nothing matches or continues through them)."""
        pre, post = self.prompt_ids(item)
        ids = [*pre, *[-1] * (length - len(pre) - len(post)), *post]  # the image tokens between
        if self.vocab is not None:
            ids = self.vocab.local(ids, missing=-1)
        return ids

    def decode(self, output_ids: list[int]) -> str:
        """The decoder's output ids (local ids with a report vocabulary) as text."""
        full = self.vocab.full(output_ids) if self.vocab is not None else output_ids
        return cast(str, self.tokenizer.decode(full, skip_special_tokens=False))  # one sequence: one string

    @staticmethod
    def _trim(row: list[int], stops: set[int], pad: int | None = None) -> list[int]:
        """The tokens up to and including the first stop token; without one, the row less the
        padding a batch appends once a row has finished (a row stopped on the marker's text)."""
        for i, t in enumerate(row):
            if t in stops:
                return row[: i + 1]
        end = len(row)
        while pad is not None and end and row[end - 1] == pad:
            end -= 1
        return row[:end]

    def run(self, results: list[StudyAnalysis], feats: list[StudyFeatures], context: RunContext) -> None:
        """Each study's draft from its T1 and T2 slices and what the other families wrote into its
        analysis (conditions with their localization, the most similar case's report).

        Several studies are drafted in one left-padded batch: on a CPU a token costs about as much
        for ten rows as for one (the weights are read once per step), so a batch of ten drafts
        in a third of the time of ten prompt-lookup drafts (benchmarks/report_batch_speed.py).
        One study alone keeps prompt lookup. An empty draft is an error: the studies that got
        one keep it (``report_source``), and the pipeline falls back to the template for the
        others."""
        items = [self.inputs_of(r, f) for r, f in zip(results, feats, strict=True)]
        budget = context.cfg.max_new_tokens
        drafts = self.generate_many(items, budget) if len(items) > 1 else [self.generate(items[0], budget)]
        empty = 0
        for r, draft in zip(results, drafts, strict=True):
            if not draft.text.strip():
                empty += 1
                continue
            r.report_text, r.report_sections, r.report_source = draft.text, dict(draft.sections), "report_agent"
        if empty:
            raise RuntimeError(f"the report agent returned an empty draft ({empty} of {len(items)} studies)")

    @staticmethod
    def inputs_of(result: StudyAnalysis, feat: StudyFeatures) -> ReportInputs:
        """What the writer drafts a study from: its T1 and T2 slice embeddings and what the other
        families wrote into its analysis (calls with their localization, the most similar case)."""
        return ReportInputs(
            t1_slices=[e.slices for s, e in feat.pairs(("T1",))],
            t2_slices=[e.slices for s, e in feat.pairs(("T2",))],
            conditions=result.conditions,
            similar_report=result.similar_cases[0].report if result.similar_cases else None,
            region=feat.study.region or "lumbar",
        )

    def _marker_id(self) -> int | None:
        ids = self._ids(self.cfg.end_marker)
        return ids[0] if len(ids) == 1 else None

    # ----- persistence ------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return f"{self.cfg.version}:{self.cfg.preset}:{self.meta.get('created', 'unsaved')}"

    def save(self, folder: str | Path) -> str:
        """Write the agent's folder and return its version."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.cfg.save(folder / "config.json")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.projector.state_dict().items()},
            str(folder / "projector.safetensors"),
        )
        self.tokenizer.save_pretrained(folder / "tokenizer")
        if self.vocab is not None:
            self.vocab.save(folder)
        # peft types get_base_model as nn.Module; it is the PreTrainedModel the adapters wrap
        base = cast(PreTrainedModel, self.decoder.get_base_model()) if _has_adapters(self.decoder) else self.decoder
        if self.cfg.preset == "tiny":
            state = {k.replace(".base_layer", ""): v for k, v in base.state_dict().items() if "lora_" not in k}
            clean = type(base)(base.config)
            clean.load_state_dict(state, strict=True)
            clean.save_pretrained(folder / "decoder", safe_serialization=True)
        if self.has_lora:
            # peft takes a str path; the adapters only: a report vocabulary changes the decoder's
            # vocabulary size, which peft would otherwise take as a reason to copy the embeddings
            self.decoder.save_pretrained(str(folder / "adapter"), save_embedding_layers=False)
        self.meta.setdefault("created", time.strftime("%Y%m%dT%H%M%S"))
        self.meta["hidden_size"] = self.hidden_size
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2))
        return self.version

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> ReportAgent:
        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder} is not a report-agent folder (no config.json)")
        cfg = ReportAgentConfig.from_dict(json.loads((folder / "config.json").read_text()))
        tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
        decoder: PreTrainedModel
        if cfg.preset == "tiny":
            decoder = AutoModelForCausalLM.from_pretrained(folder / "decoder")
        else:
            decoder, _ = load_pretrained_decoder(cfg)
        agent = cls(cfg, decoder, tok, ReportVocabulary.load(folder))
        if (folder / "adapter").exists():
            from peft import PeftModel

            agent.decoder = PeftModel.from_pretrained(agent.decoder, folder / "adapter", is_trainable=False)
        agent.projector.load_state_dict(load_file(str(folder / "projector.safetensors")))
        if (folder / "meta.json").exists():
            agent.meta = json.loads((folder / "meta.json").read_text())
        for p in agent.parameters():
            p.requires_grad_(False)
        return agent.to(device).eval()


class _TextStop(StoppingCriteria):
    """Stops each row once its decoded tail contains ``marker`` (a marker that is several tokens
    of a pretrained vocabulary; works on local ids through the agent's ``decode``)."""

    def __init__(self, agent: ReportAgent, marker: str, lookahead: int = 0) -> None:
        self.agent, self.marker = agent, marker
        # prompt lookup keeps up to ``lookahead`` + 1 tokens in one step: the marker may end before them
        self.tail = len(agent._ids(marker)) + 2 + lookahead

    def hit(self, ids: list[int]) -> bool:
        """Whether the marker's text is in the last tokens of ``ids``."""
        return self.marker in self.agent.decode(ids[-self.tail :])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        # generate() keeps a finished row finished (and pads it), so only new hits matter here
        hit = [self.hit(row.tolist()) for row in input_ids]
        return torch.tensor(hit, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]
