"""Sequence weighting from acquisition physics: TR, TE, TI, ScanningSequence, SequenceVariant.

This is the last line of evidence, used when names are missing or need checking. Thresholds are
textbook values that hold at 1.5 T and 3 T:

- spin echo, TR < 800 ms and TE < 30 ms → T1-weighted;
- TR ≥ 2000 ms and TE ≥ 70 ms → T2-weighted;
- TR ≥ 1500 ms and TE < 40 ms → proton density;
- inversion recovery: TI 50-300 ms nulls fat (STIR), TI ≥ 1500 ms with long TE nulls fluid
  (FLAIR), TI 300-1500 ms with short TE is T1-weighted (T1 FLAIR, MPRAGE);
- gradient echo without a spin echo and without inversion → GRE (T2* or spoiled T1; names
  decide between them, physics alone cannot).
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.dicom.tags import TagView

T1_MAX_TR, T1_MAX_TE = 800.0, 30.0
T2_MIN_TR, T2_MIN_TE = 2000.0, 70.0
PD_MIN_TR, PD_MAX_TE = 1500.0, 40.0
STIR_TI = (50.0, 300.0)
FLAIR_MIN_TI = 1500.0
_ECHO_PULSE = {"SPIN": {"SE"}, "GRADIENT": {"GR"}, "BOTH": {"SE", "GR"}}


@dataclass(frozen=True)
class Physics:
    """The acquisition parameters that matter for weighting, read once."""

    tr: float | None
    te: float | None
    ti: float | None
    sequence: frozenset[str]
    variant: frozenset[str]
    inversion: bool
    field_t: float | None

    @property
    def gradient_only(self) -> bool:
        """Gradient echo (or gradient-echo EPI) with no spin-echo refocusing."""
        return bool(self.sequence & {"GR", "EP"}) and "SE" not in self.sequence


def read_physics(tags: TagView) -> Physics:
    sequence = set(tags.texts("ScanningSequence"))
    sequence |= _ECHO_PULSE.get(tags.text("EchoPulseSequence").upper(), set())  # Enhanced MR
    variant = frozenset(tags.texts("SequenceVariant"))
    te = tags.number("EchoTime")
    if te is None:
        te = tags.number("EffectiveEchoTime")  # Enhanced MR: MR Echo macro
    ti = tags.number("InversionTime")
    if ti is None:
        ti = tags.number("InversionTimes")
    field = tags.number("MagneticFieldStrength")
    if field is not None and field > 100:  # some GE headers store gauss (15000 = 1.5 T)
        field /= 10000.0
    inversion = ("IR" in sequence or "MP" in variant or tags.text("InversionRecovery").upper() == "YES") and not (
        ti is not None and ti <= 0
    )
    return Physics(
        tr=tags.number("RepetitionTime"),
        te=te,
        ti=ti if ti and ti > 0 else None,
        sequence=frozenset(sequence),
        variant=variant,
        inversion=inversion,
        field_t=field,
    )


def weighting_from_physics(p: Physics) -> tuple[str | None, str]:
    """(subtype or None, reason). None means the physics does not decide."""
    seq = "/".join(sorted(p.sequence)) or "not recorded"
    timing = f"TR {_ms(p.tr)} / TE {_ms(p.te)}" + (f" / TI {_ms(p.ti)}" if p.ti else "")
    if p.gradient_only:
        if p.inversion and p.ti is not None and STIR_TI[1] <= p.ti < FLAIR_MIN_TI:
            return "T1", f"inversion-prepared gradient echo ({timing}) → T1-weighted (MPRAGE-like)"
        return "GRE", f"gradient echo (ScanningSequence {seq}) without spin echo → GRE"
    if p.inversion and p.ti is not None:
        field = f" at {p.field_t:g} T" if p.field_t else ""
        if STIR_TI[0] <= p.ti < STIR_TI[1]:
            return "STIR", f"inversion recovery with short TI {_ms(p.ti)}{field} nulls fat → STIR"
        if p.ti >= FLAIR_MIN_TI and (p.te is None or p.te >= T2_MIN_TE - 10):
            return "FLAIR", f"inversion recovery with long TI {_ms(p.ti)} and long TE nulls fluid → FLAIR"
        if p.te is not None and p.te < PD_MAX_TE:
            return "T1", f"inversion recovery {timing} with short TE → T1-weighted (T1 FLAIR)"
    if p.tr is None or p.te is None:
        return None, "TR/TE not recorded → physics cannot decide"
    family = "spin echo" if "SE" in p.sequence else f"ScanningSequence {seq}"
    if p.tr < T1_MAX_TR and p.te < T1_MAX_TE:
        return "T1", f"{timing} ({family}) → T1-weighted"
    if p.tr >= T2_MIN_TR and p.te >= T2_MIN_TE:
        return "T2", f"{timing} ({family}) → T2-weighted"
    if p.tr >= PD_MIN_TR and p.te < PD_MAX_TE:
        return "PD", f"{timing} ({family}) → proton-density-weighted"
    return None, f"{timing} is between T1, T2 and PD ranges → physics cannot decide"


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:g} ms"
