"""The DINOv3 student/teacher meta-architecture (the loss lives in ``ml.train.pretrain``).

Student and teacher share architecture; the teacher is an exponential moving average of the
student and sees only unmasked global crops. ``forward`` returns every quantity the DINO, iBOT,
KoLeo and Gram losses need, and computes none of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ml.spinefm.backbone import SpineViT
from ml.spinefm.heads import PrototypeHead


@dataclass
class SSLOutput:
    student_cls_logits: torch.Tensor  # [S, B, K]: S = 2 global + n_local crops
    teacher_cls_logits: torch.Tensor  # [2, B, K]
    student_patch_logits: torch.Tensor  # [M, K] masked patches of the global crops
    teacher_patch_logits: torch.Tensor  # [M, K]
    student_cls: torch.Tensor  # [2, B, D] backbone CLS of global crops (KoLeo)
    student_patches: torch.Tensor  # [2B, N, D] backbone patches of global crops (Gram)


def _branch_parts(branch: nn.ModuleDict) -> tuple[SpineViT, PrototypeHead, PrototypeHead]:
    """(backbone, DINO head, iBOT head) of the student or teacher ``ModuleDict``, with their types.

    The branches stay ``ModuleDict``s because their keys are the parameter names checkpoints hold
    (``student.backbone.*``); indexing one is typed as a plain ``Module``, so this names what
    ``SSLModel.__init__`` put there.
    """
    return (
        cast(SpineViT, branch["backbone"]),
        cast(PrototypeHead, branch["dino_head"]),
        cast(PrototypeHead, branch["ibot_head"]),
    )


class SSLModel(nn.Module):
    def __init__(
        self,
        backbone: SpineViT,
        out_dim: int = 65536,
        patch_out_dim: int = 8192,
        head_hidden: int = 2048,
        head_bottleneck: int = 256,
    ) -> None:
        super().__init__()
        d = backbone.embed_dim
        self.student = nn.ModuleDict(
            {
                "backbone": backbone,
                "dino_head": PrototypeHead(d, out_dim, head_hidden, head_bottleneck),
                "ibot_head": PrototypeHead(d, patch_out_dim, head_hidden, head_bottleneck),
            }
        )
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- m * teacher + (1 - m) * student."""
        s_params: list[torch.Tensor] = list(self.student.parameters())
        t_params: list[torch.Tensor] = list(self.teacher.parameters())
        torch._foreach_mul_(t_params, momentum)
        torch._foreach_add_(t_params, [p.detach() for p in s_params], alpha=1.0 - momentum)

    def forward(self, global_crops: torch.Tensor, local_crops: torch.Tensor | None, masks: torch.Tensor) -> SSLOutput:
        """global_crops: [2B, 1, H, W] (view-major: all first views, then all second views);
        local_crops: [nB, 1, h, w] or None; masks: [2B, N] bool iBOT masks for the student."""
        two_b = global_crops.shape[0]
        b = two_b // 2
        s_bb, s_dino, s_ibot = _branch_parts(self.student)
        t_bb, t_dino, t_ibot = _branch_parts(self.teacher)
        s_glob = s_bb.forward_tokens(global_crops, masks)
        cls_feats = [s_glob.cls]
        if local_crops is not None and local_crops.numel():
            cls_feats.append(s_bb.forward_tokens(local_crops).cls)
        s_cls = torch.cat(cls_feats)  # [S*B, D]
        s_logits = s_dino(s_cls).view(-1, b, self.n_protos)  # [S, B, K]
        s_patch_logits = s_ibot(s_glob.patches[masks])  # [M, Kp]

        with torch.no_grad():
            t_glob = t_bb.forward_tokens(global_crops)
            t_logits = t_dino(t_glob.cls).view(2, b, self.n_protos)
            t_patch_logits = t_ibot(t_glob.patches[masks])
        return SSLOutput(
            student_cls_logits=s_logits,
            teacher_cls_logits=t_logits,
            student_patch_logits=s_patch_logits,
            teacher_patch_logits=t_patch_logits,
            student_cls=s_glob.cls.view(2, b, -1),
            student_patches=s_glob.patches,
        )

    @property
    def n_protos(self) -> int:
        return _branch_parts(self.student)[1].prototypes.shape[0]
