"""SpineFM losses, one per module: DINO, iBOT, KoLeo, Gram anchoring, InfoNCE."""

from ml.spinefm.losses.dino import DINOLoss, sinkhorn_knopp
from ml.spinefm.losses.gram import gram_loss
from ml.spinefm.losses.ibot import IBOTPatchLoss
from ml.spinefm.losses.infonce import ClipLoss, infonce
from ml.spinefm.losses.koleo import koleo_loss

__all__ = ["ClipLoss", "DINOLoss", "IBOTPatchLoss", "gram_loss", "infonce", "koleo_loss", "sinkhorn_knopp"]
