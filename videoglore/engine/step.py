"""One optimizer step, written once: the training loop and the precise-BN update stage
(``precise_bn.update_stage``) both call ``sgd_step``::

    loader batch ──run.forward(net): to device, normalize, autocast──▶ logits (B, K)
      ──CE (label smoothing)──▶ loss ──sum over ranks: finite?──▶ zero_grad
      ──backward (GradScaler for fp16)──▶ [drop the grads of parameters this step leaves alone]
      ──▶ clip grad ─▶ SGD step

The loss is summed over the ranks *before* backward: every rank sees the same (finite or not)
loss and stops together instead of hanging in DDP's gradient all-reduce.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from videoglore.engine.distributed import all_reduce_sum
from videoglore.engine.metrics import topk_correct
from videoglore.errors import TrainingError, explain_out_of_memory

if TYPE_CHECKING:
    from videoglore.engine.run import Run

OOM_ADVICE = (
    "lower train.batch_size (the lr is rescaled automatically), use shorter clips "
    "(data.num_frames) or smaller crops (data.crop_size), keep runtime.amp=bf16/fp16 and "
    "runtime.channels_last=auto"
)


def sgd_step(
    run: Run,
    clips,
    labels: torch.Tensor,
    where: str,
    only: list[nn.Parameter] | None = None,
) -> tuple[float, float, float]:
    """Forward ``run.net``, check the loss on all ranks, backward, update; returns sums over the
    ranks of (loss × clips, correct clips, clips).

    Args:
        where: when this step runs, for the messages (``"at iteration 3 (epoch 1)"``).
        only: the parameters this step updates; the others get no update at all (no weight
            decay, no momentum): their gradients are dropped before the optimizer step.

    Raises:
        TrainingError: a non-finite loss (nothing is saved) or out of (GPU or CPU) memory,
            with advice.
    """
    tc, rt = run.cfg.train, run.rt
    with explain_out_of_memory(where, OOM_ADVICE):
        labels = labels.to(rt.device, non_blocking=True)
        logits = run.forward(run.net, clips)  # (B, K)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=tc.label_smoothing)
        correct = topk_correct(logits.detach().float(), labels, 1).sum().item()
        loss_sum, correct_sum, n = all_reduce_sum(
            [loss.item() * len(labels), float(correct), float(len(labels))], rt
        )
        if not math.isfinite(loss_sum):
            raise TrainingError(
                f"loss is {loss_sum / n} {where}; stopped without saving. Last good checkpoint: "
                f"{run.state.last_checkpoint or 'none'}. Lower train.lr or set train.clip_grad"
            )
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        params = list(run.model.parameters()) if only is None else only
        if only is not None:
            updated = {id(p) for p in only}
            for param in run.model.parameters():
                if id(param) not in updated:
                    param.grad = None
        if tc.clip_grad > 0:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(params, tc.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    return loss_sum, correct_sum, n
