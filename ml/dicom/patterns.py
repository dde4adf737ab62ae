"""Vendor naming conventions for MR series, as data.

Each row is a compiled regular expression over lower-cased SeriesDescription / ProtocolName /
SequenceName text, the subtype it implies, and which vendors use it. Tables are ordered: the
first matching row wins, so more specific rows (``t1_tirm`` = T1 FLAIR) come before generic ones
(``tirm`` = STIR). Keeping the conventions in tables makes a new site's naming a one-line change
with a test, instead of another branch in the classifier.

Token boundaries: scanner names join words with ``_``, ``/``, spaces or nothing, so ``B`` and
``E`` below mean "not preceded/followed by a letter or digit" rather than regex ``\\b``
(which treats ``_`` as part of a word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

B = r"(?<![a-z0-9])"  # start of a token
E = r"(?![a-z0-9])"  # end of a token


@dataclass(frozen=True)
class Pattern:
    """One naming convention: ``regex`` found in the text implies ``subtype``."""

    regex: re.Pattern[str]
    subtype: str
    vendors: str
    note: str


def _p(regex: str | tuple[str, ...], subtype: str, vendors: str, note: str) -> Pattern:
    """Build a row; a tuple of alternatives is joined with ``|`` (keeps long rows readable)."""
    joined = regex if isinstance(regex, str) else "|".join(regex)
    return Pattern(re.compile(joined), subtype, vendors, note)


LOCALIZER_PATTERNS: tuple[Pattern, ...] = (
    _p(
        rf"locali[sz]er|locator|{B}loc{E}|scout|{B}survey|{B}pilot|3[- ]?pl(ane)?{E}|tri[- ]?plane|scanogram",
        "LOCALIZER",
        "all",
        "GE '3-PLANE LOC', Siemens 'localizer'/'AAHead_Scout', Philips 'Survey', Canon 'Scout', 'PILOT'",
    ),
)

DIFFUSION_PATTERNS: tuple[Pattern, ...] = (
    _p(rf"{B}d?adc{E}|apparent[ _]diff", "ADC", "all", "ADC map: Siemens '_ADC', Philips 'dADC'"),
    _p(
        (
            rf"{B}dwi|diff(usion)?|ep2d_diff|{B}trace(w)?{E}|resolve|{B}dti{E}|tensor",
            rf"{B}ep_b\d+|{B}b ?=? ?\d{{3,4}}{E}",
        ),
        "DWI",
        "all",
        "Siemens 'ep2d_diff', 'RESOLVE', sequence 'ep_b1000'; GE/Philips 'DWI', 'TRACEW'",
    ),
)

ANGIO_PATTERNS: tuple[Pattern, ...] = (
    _p(
        rf"{B}tof|{B}mra{E}|angio|{B}pc[_ ]?[23]d|inflow",
        "ANGIO",
        "all",
        "time-of-flight / phase-contrast angiography and their MIPs",
    ),
)

CONTRAST_PATTERNS: tuple[Pattern, ...] = (
    _p(
        (
            rf"\+ ?c{E}|{B}c ?\+|\+ ?(gd|gad|km){E}",
            rf"{B}(post|postc|gad|gd|gado|contrast|ce|km|mit ?km){E}|postcontrast|post[_ -]?gd",
        ),
        "T1_POSTCONTRAST",
        "all",
        "GE 'AX T1 +C', 'C+'; Siemens 't1_vibe_ce', 'POST'; 'GAD', 'GD', German 'KM' (Kontrastmittel)",
    ),
)

# Words that explicitly deny contrast ('T1 PRE', 'nativ') cancel a description-only contrast hit.
NO_CONTRAST = re.compile(rf"{B}(pre|nativ|native|non[- ]?contrast|w/?o|without){E}")

DIXON_PATTERNS: tuple[Pattern, ...] = (
    _p(
        rf"dixon|{B}ideal{E}|mdixon|{B}flex{E}|{B}lava[_ -]?flex|{B}wfs{E}",
        "DIXON",
        "all",
        "Siemens 'Dixon', GE 'IDEAL'/'LAVA-Flex', Philips 'mDIXON', Canon 'WFS'",
    ),
)

# Which Dixon image this is; searched only once Dixon evidence exists (single letters are ambiguous).
DIXON_COMPONENTS: tuple[Pattern, ...] = (
    _p(rf"{B}(w|water|wat){E}|_w$", "DIXON_WATER", "all", "water image"),
    _p(rf"{B}(f|fat){E}|_f$", "DIXON_FAT", "all", "fat image"),
    _p(rf"{B}(in|ip|inphase|in[_ -]phase){E}", "DIXON_IN_PHASE", "all", "in-phase image"),
    _p(
        rf"{B}(opp|op|oop|outphase|out[_ -]?phase|opp[_ -]?phase){E}",
        "DIXON_OPP_PHASE",
        "all",
        "opposed-phase",
    ),
)

MAP_PATTERNS: tuple[Pattern, ...] = (
    _p(
        (
            rf"{B}(q?t[12]|t2\*|r2\*?)[ _-]?map|relaxometry",
            rf"{B}map(ping)?{E}.*{B}q?t[12]{E}|{B}qt[12]{E}.*{B}map{E}",
        ),
        "PARAMETRIC_MAP",
        "all",
        "quantitative T1/T2/T2* maps and their source images ('T2 MAP', 'qT1 map')",
    ),
)

# Weighting conventions, most specific first.
WEIGHTING_PATTERNS: tuple[Pattern, ...] = (
    _p(
        rf"{B}s?t1w?.{{0,12}}(flair|tirm|{B}ir{E})|(flair|tirm).{{0,12}}{B}t1",
        "T1",
        "GE, Siemens, Philips",
        "T1 FLAIR / T1 inversion recovery: GE 'T1 FLAIR', Siemens 't1_tirm', Philips 'T1W_IR'",
    ),
    _p(
        rf"{B}s?stir|tirm|{B}tir{E}",
        "STIR",
        "all",
        "short-tau inversion recovery: 'STIR' (GE/Philips/Canon), Siemens 'tirm'",
    ),
    _p(r"flair|dark[-_ ]?fluid", "FLAIR", "all", "fluid-attenuated T2: 'FLAIR', Siemens 'dark-fluid'"),
    _p(
        rf"t2\*|t2star|{B}t2s{E}|{B}(merge|medic|hemo|swi|swan|bold|resting|fmri){E}",
        "GRE",
        "all",
        "T2*-weighted gradient echo: GE 'MERGE', Siemens 'MEDIC', 'SWI'/'SWAN', BOLD EPI",
    ),
    _p(
        (
            rf"{B}s?t1w?{E}|{B}s?t1(w|_|\s|/|tse|fse|se|ffe|tfe|fl|vibe)|3d[_ ]?t1",
            rf"{B}(mprage|mp-rage|bravo|spgr|fspgr|vibe|lava|thrive|tfe){E}",
        ),
        "T1",
        "all",
        "GE 'AX T1 FSE', Siemens 't1_tse_tra', Philips 'T1W_SE'/'sT1W_TSE', 3D T1 GRE 'VIBE'/'LAVA'/'THRIVE'",
    ),
    _p(
        rf"{B}s?t2w?{E}|{B}s?t2(w|_|\s|/|tse|fse|spc|space)|{B}(frfse|haste|ssfse|ss-fse|myelo|cube|vista|spc){E}",
        "T2",
        "all",
        "GE 'SAG T2 FSE'/'FRFSE', Siemens 't2_tse_sag'/'HASTE', Philips 'T2W_TSE'/'sT2W', Canon 'T2W_FSE'",
    ),
    _p(
        rf"{B}s?pdw?{E}|{B}s?pd(w|_|\s|/|tse|fse|fs)|proton[ _-]?density|{B}dp{E}",
        "PD",
        "all",
        "proton density: GE 'FSE PD', Siemens 'pd_tse', Philips 'PDW_TSE'",
    ),
    _p(
        rf"ciss|fiesta|true[ _-]?fisp|{B}b[_ -]?ffe{E}|{B}bssfp{E}|balanced",
        "GRE",
        "all",
        "balanced SSFP: Siemens 'CISS'/'TrueFISP', GE 'FIESTA', Philips 'bFFE'",
    ),
    _p(
        rf"{B}(gre|ffe|fe|fe[23]d|fl[23]d\d*|flash|gradient|epfid\w*){E}",
        "GRE",
        "all",
        "gradient echo: 'GRE', Philips 'FFE', Canon 'FE', Siemens 'fl2d'/'flash', EPI 'epfid'",
    ),
)
