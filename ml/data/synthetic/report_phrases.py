"""The wording of synthetic reports: the word pickers every section uses and the per-level
DISCS line, the densest part of a report (height loss, herniation by Lumbar Disc Nomenclature
2.0, canal, recess and foraminal stenosis, facet cysts on one line per level).

Every choice draws from the report's own random stream (``Writer.rng``), so the order of the
calls here and in ``report.write_report`` decides the text: same seed, same report.
"""

from __future__ import annotations

import numpy as np

from ml.data.synthetic.findings import Finding, Patient

_HEDGE = ("possible", "questionable", "equivocal", "suspected", "probable", "subtle, indeterminate")
_SEV_WORD = {
    "mild": ("mild", "slight", "mild"),
    "moderate": ("moderate", "moderate", "moderate-grade"),
    "severe": ("severe", "marked", "high-grade"),
}


class Writer:
    """Random choices between equivalent wordings, severity synonyms and hedges."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, *opts: str) -> str:
        return str(opts[int(self.rng.integers(len(opts)))])

    def sev(self, s: str) -> str:
        return self.pick(*_SEV_WORD[s])

    def side(self, side: str | None) -> str:
        if side in ("left", "right"):
            return side
        return "bilateral" if side == "bilateral" else ""

    def hedge(self) -> str:
        return self.pick(*_HEDGE)


def findings_of(findings: list[Finding], cond: str, level: str | None = None) -> list[Finding]:
    """The findings of one condition (at one level when ``level`` is given)."""
    return [f for f in findings if f.condition == cond and (level is None or f.level == level)]


def upper_vertebra(level: str) -> str:
    """'L4-5' -> 'L4'."""
    return level.split("-")[0]


def lower_vertebra(level: str) -> str:
    """'L4-5' -> 'L5', 'L5-S1' -> 'S1'."""
    b = level.split("-")[1]
    return b if b[0].isalpha() else level[0] + b


def disc_line(w: Writer, lv: str, fs: list[Finding], p: Patient) -> str:
    """The DISCS line of one level ("L4-5: ..."), normal wording when nothing is found there."""
    parts: list[str] = []
    hl = findings_of(fs, "disc_height_loss", lv)
    g = p.degen.get(lv, 0.0)
    if hl and hl[0].label == 1:
        parts.append(
            w.pick(
                f"{w.sev(hl[0].severity)} disc height loss with desiccation",
                f"{w.sev(hl[0].severity)} loss of disc height and T2 signal",
                f"degenerative disc with {w.sev(hl[0].severity)} narrowing of the disc space",
            )
        )
    elif hl:
        parts.append(
            w.pick("possible minimal disc space narrowing", "borderline disc height, questionable early narrowing")
        )
    elif g >= 0.45:
        parts.append(w.pick("disc desiccation with preserved height", "mild desiccation, disc height maintained"))
    hern = findings_of(fs, "disc_herniation", lv)
    if hern:
        h = hern[0]
        typ = h.detail.get("type", "protrusion")
        zone = h.detail.get("zone", "paracentral")
        loc = "central" if h.side == "central" else f"{h.side} {zone}"
        mig = h.detail.get("migration", "none")
        if h.label == -1:
            parts.append(
                w.pick(
                    f"{w.hedge()} tiny {loc} protrusion versus annular bulge",
                    f"tiny {loc} annular fissure, {w.hedge()} small protrusion",
                )
            )
        elif typ == "extrusion":
            tail = f" with {mig} migration" if mig != "none" else ""
            parts.append(
                w.pick(
                    f"{loc} disc extrusion{tail}",
                    f"{w.sev(h.severity)} {loc} extruded disc herniation{tail}",
                    f"{loc} extrusion{tail} indenting the thecal sac",
                )
            )
        else:
            parts.append(
                w.pick(
                    f"{w.sev(h.severity)} {loc} disc protrusion",
                    f"{loc} protrusion",
                    f"broad-based {loc} protrusion contacting the ventral thecal sac",
                )
            )
    elif p.mods.bulge.get(lv, 0) > 1.5:
        parts.append(
            w.pick("diffuse disc bulge", "circumferential disc bulge without focal herniation", "mild broad disc bulge")
        )
    cs = findings_of(fs, "canal_stenosis", lv)
    if cs:
        c = cs[0]
        if c.label == 1:
            parts.append(
                w.pick(
                    f"{w.sev(c.severity)} spinal canal stenosis",
                    f"{w.sev(c.severity)} central canal narrowing",
                    f"resulting in {w.sev(c.severity)} canal stenosis",
                )
            )
        else:
            parts.append(w.pick("borderline canal narrowing", f"{w.hedge()} mild central stenosis"))
    for f in findings_of(fs, "subarticular_stenosis", lv):
        parts.append(
            w.pick(
                f"{w.sev(f.severity)} {f.side} subarticular (lateral recess) stenosis",
                f"narrowing of the {f.side} lateral recess ({f.severity})",
            )
        )
    for f in findings_of(fs, "foraminal_narrowing", lv):
        parts.append(
            w.pick(
                f"{w.sev(f.severity)} {f.side} neural foraminal narrowing",
                f"{w.sev(f.severity)} {f.side} foraminal stenosis",
            )
        )
    for f in findings_of(fs, "synovial_cyst", lv):
        parts.append(
            w.pick(f"{f.side} facet synovial cyst projecting into the canal", f"{f.side} juxtafacet (synovial) cyst")
        )
    if not parts:
        parts.append(
            w.pick(
                "No disc bulge or herniation. No stenosis",
                "Normal",
                "Unremarkable disc. Canal and foramina patent",
                "No significant abnormality",
            )
        )
    s = "; ".join(parts)
    return f"{lv}: {s[0].upper()}{s[1:]}."
