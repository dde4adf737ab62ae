"""Acquisition profiles of three scanner families (GE-, Siemens- and Philips-like).

They differ where real vendors differ and where a model can overfit: naming conventions
(SeriesDescription / ProtocolName), ScanningSequence / SequenceVariant / ScanOptions
values, private tags, matrix and zero-filling, noise level, coil bias field, TR/TE
choices, stored intensity range (and Philips-style rescale slope). Cross-manufacturer
evaluation trains on one profile and tests on the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.data.synthetic.render import Degradation


@dataclass(frozen=True)
class Vendor:
    key: str
    manufacturer: str
    model: str
    field_t: float
    software: str
    descriptions: dict[str, str]
    protocol_prefix: str
    seq_se: tuple[str, str, str]  # ScanningSequence, SequenceVariant, ScanOptions (TSE/FSE)
    seq_ir: tuple[str, str, str]  # same for STIR
    sag_matrix: int
    ax_matrix: int
    degradation: Degradation
    te_scale: float
    tr_scale: float
    target: float  # stored value at the series' 99.5th percentile
    rescale_slope: float | None  # Philips-like: stored values carry a rescale
    private_creator: tuple[int, str]  # (group, creator string)
    sag_right_to_left: bool


VENDORS: dict[str, Vendor] = {
    "GE": Vendor(
        key="GE",
        manufacturer="GE MEDICAL SYSTEMS",
        model="SYNTHETIC GE-LIKE 1.5T",
        field_t=1.5,
        software="SpineReview-synth GE-profile 1.0",
        descriptions={
            "sag_t1": "SAG T1 FSE",
            "sag_t2": "SAG T2 FSE",
            "sag_stir": "SAG STIR",
            "ax_t2": "AX T2 FSE",
            "sag_t1_post": "SAG T1 FSE FS +C",
            "sag_dixon_w": "SAG T2 FLEX WATER",
            "sag_dixon_f": "SAG T2 FLEX FAT",
        },
        protocol_prefix="SPINE/",
        seq_se=("SE", "SK\\OSP", "FAST_GEMS\\NPW_GEMS"),
        seq_ir=("IR\\SE", "SK\\MP\\OSP", "FAST_GEMS\\IR_GEMS"),
        sag_matrix=512,
        ax_matrix=320,
        degradation=Degradation(noise=0.035, bias_len=170.0, bias_poly=0.06, acq_frac=0.625),
        te_scale=1.0,
        tr_scale=1.0,
        target=2400.0,
        rescale_slope=None,
        private_creator=(0x0019, "GEMS_ACQU_01"),
        sag_right_to_left=True,
    ),
    "Siemens": Vendor(
        key="Siemens",
        manufacturer="SIEMENS",
        model="SYNTHETIC SIEMENS-LIKE 3T",
        field_t=3.0,
        software="syngo MR SpineReview-synth",
        descriptions={
            "sag_t1": "t1_tse_sag",
            "sag_t2": "t2_tse_sag",
            "sag_stir": "t2_tirm_sag",
            "ax_t2": "t2_tse_tra",
            "sag_t1_post": "t1_tse_fs_sag_post",
            "sag_dixon_w": "t2_tse_dixon_sag_W",
            "sag_dixon_f": "t2_tse_dixon_sag_F",
        },
        protocol_prefix="",
        seq_se=("SE", "SK\\SP\\OSP", "PFP"),
        seq_ir=("SE\\IR", "SK\\SP\\MP", "IR"),
        sag_matrix=384,
        ax_matrix=320,
        degradation=Degradation(noise=0.025, bias_len=130.0, bias_poly=0.10, acq_frac=0.8),
        te_scale=0.92,
        tr_scale=1.1,
        target=900.0,
        rescale_slope=None,
        private_creator=(0x0029, "SIEMENS CSA HEADER"),
        sag_right_to_left=False,
    ),
    "Philips": Vendor(
        key="Philips",
        manufacturer="Philips Medical Systems",
        model="SYNTHETIC PHILIPS-LIKE 1.5T",
        field_t=1.5,
        software="5.7.1 SpineReview-synth",
        descriptions={
            "sag_t1": "T1W_TSE_SAG",
            "sag_t2": "T2W_TSE_SAG",
            "sag_stir": "STIR_SAG",
            "ax_t2": "T2W_TSE_TRA",
            "sag_t1_post": "T1W_TSE_SPIR_SAG_GD",
            "sag_dixon_w": "T2W_mDIXON_SAG_W",
            "sag_dixon_f": "T2W_mDIXON_SAG_F",
        },
        protocol_prefix="WIP ",
        seq_se=("SE", "SK", ""),
        seq_ir=("IR", "SK\\MP", "IR"),
        sag_matrix=480,
        ax_matrix=352,
        degradation=Degradation(noise=0.045, bias_len=220.0, bias_poly=0.04, acq_frac=0.7),
        te_scale=1.1,
        tr_scale=0.95,
        target=3000.0,
        rescale_slope=1.536,
        private_creator=(0x2001, "Philips Imaging DD 001"),
        sag_right_to_left=True,
    ),
}


def vendor(key: str) -> Vendor:
    try:
        return VENDORS[key]
    except KeyError:
        raise KeyError(f"unknown vendor {key!r}; known: {', '.join(VENDORS)}") from None
