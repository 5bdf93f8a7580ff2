"""One search step of the official FairDARTS code (xiaomi-automl/FairDARTS, ``fairdarts/``),
run on the CPU for ``benchmarks/search_step.py --official DIR``.

The code is the user's checkout (never vendored here). It is written for CUDA only
(``.cuda()`` on the alphas and in the loss), so ``Tensor.cuda`` returns the tensor
itself while it runs. The step is the one of its ``train_search.py``: ``Architect.step``
(full backward, Adam) on the search batch, then the weight step (zero the weights'
gradients, forward, ``ConvSeparateLoss`` with the default ``aux_loss_weight`` 10, full
backward, gradient clipping at 5, SGD with momentum) on the training batch, all with the
script's default settings.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F  # noqa: N812


def official_step(root: Path, channels: int, layers: int, xa: torch.Tensor, ya: torch.Tensor,
                  xw: torch.Tensor, yw: torch.Tensor) -> Callable[[], None]:
    """A closure running one official architecture + weight step on the given batches."""
    code = root / "fairdarts"
    if not (code / "model_search.py").is_file():
        raise SystemExit(f"{root}: no fairdarts/model_search.py (give the root of a "
                         "checkout of github.com/xiaomi-automl/FairDARTS)")
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.path.insert(0, str(code))
    from architect import Architect  # type: ignore[import-not-found]
    from model_search import Network  # type: ignore[import-not-found]
    from separate_loss import ConvSeparateLoss  # type: ignore[import-not-found]

    args = SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-3,
                           arch_lr_gamma=0.9, arch_weight_decay=1e-3)
    criterion = ConvSeparateLoss(weight=10.0)
    model = Network(channels, 10, layers, criterion, steps=4, multiplier=4, stem_multiplier=3)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), 0.005, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    architect = Architect(model, args)

    def step() -> None:
        architect.step(xa, ya)
        optimizer.zero_grad()
        logits = model(xw)
        aux = torch.cat([F.sigmoid(model.alphas_normal), F.sigmoid(model.alphas_reduce)], 0)
        loss, _, _ = criterion(logits, yw, aux)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return step
