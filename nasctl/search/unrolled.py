"""Second-order DARTS architecture gradient (Liu et al., 2019, eq. 7-8).

grad_alpha L_val(w', alpha) - eta * (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / 2r
with w' = w - eta * (momentum * buf + grad_w L_train(w) + wd * w) (one virtual SGD step,
as the official code) and w+- = w +- r * grad_w' L_val(w', alpha), r = 0.01 / ||grad_w'||.
The weights are restored afterwards.

The step runs in fp32 whatever ``--amp`` says: it differentiates losses twice and takes a
finite difference of the results, which unscaled fp16 gradients would not survive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nasctl.search.step import SearchStep


def unrolled_arch_grads(step: SearchStep, xw: torch.Tensor, yw: torch.Tensor, xa: torch.Tensor,
                        ya: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    weights, alphas, opt = step.weights, step.alphas, step.w_opt
    group = opt.param_groups[0]
    eta, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
    backup = [p.detach().clone() for p in weights]
    loss, _c = step.loss(xw, yw, arch=False, amp=False)
    dw = torch.autograd.grad(loss, weights)
    with torch.no_grad():
        for p, g in zip(weights, dw, strict=True):
            buf = opt.state.get(p, {}).get("momentum_buffer")
            update = g + wd * p
            if buf is not None:
                update = update + momentum * buf
            p.sub_(eta * update)
    val_loss, correct = step.loss(xa, ya, arch=True, amp=False)
    grads = torch.autograd.grad(val_loss, alphas + weights)
    d_alpha, d_w = list(grads[: len(alphas)]), grads[len(alphas):]
    r = 0.01 / torch.cat([g.flatten() for g in d_w]).norm().clamp_min(1e-12)
    implicit = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, b, g in zip(weights, backup, d_w, strict=True):
                p.copy_(b + sign * r * g)
        train_loss, _c = step.loss(xw, yw, arch=False, amp=False)
        implicit.append(torch.autograd.grad(train_loss, alphas))
    with torch.no_grad():
        for p, b in zip(weights, backup, strict=True):
            p.copy_(b)
    for i, (gp, gn) in enumerate(zip(*implicit, strict=True)):
        d_alpha[i] = d_alpha[i] - eta * (gp - gn) / (2 * r)
    return d_alpha, val_loss.detach(), correct
