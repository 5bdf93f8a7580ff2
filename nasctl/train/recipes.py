"""Final-training recipes, as data.

``cifar10`` and ``imagenet`` are the DARTS evaluation settings (Liu et al., ICLR 2019, and the
official ``train.py`` / ``train_imagenet.py``). FairDARTS's CIFAR script uses the CIFAR
settings; the official FairDARTS code has no ImageNet training script (its ImageNet model
came from a different, unreleased search space), so ``imagenet`` is DARTS's recipe, not a
FairDARTS one. ``digits`` is
a small CPU setting on the embedded digits dataset: a few minutes on two cores, well above
chance, for trying the whole pipeline offline.

Each recipe lists only the fields that differ from ``TrainConfig``'s defaults.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "cifar10": {
        "dataset": "cifar10",
        "channels": 36,
        "layers": 20,
        "batch_size": 96,
        "epochs": 600,
        "lr": 0.025,
        "lr_schedule": "cosine",
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "cutout": 16,
        "auxiliary_weight": 0.4,
        "drop_path": 0.2,
        "grad_clip": 5.0,
        "num_workers": 4,
    },
    "imagenet": {
        "dataset": "imagenet",
        "channels": 48,
        "layers": 14,
        "batch_size": 128,
        "epochs": 250,
        "lr": 0.1,
        "lr_schedule": "exponential",
        "lr_gamma": 0.97,
        "momentum": 0.9,
        # train_imagenet.py uses 3e-5 here, ten times less than on CIFAR.
        "weight_decay": 3e-5,
        "label_smoothing": 0.1,
        "cutout": 0,
        "auxiliary_weight": 0.4,
        "drop_path": 0.0,
        "grad_clip": 5.0,
        "num_workers": 8,
    },
    "digits": {
        "dataset": "digits",
        "channels": 8,
        "layers": 5,
        "batch_size": 16,  # small batches: more steps, so ~90% test top-1 in two epochs
        "epochs": 3,
        "lr": 0.05,
        "lr_schedule": "cosine",
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "cutout": 0,
        "auxiliary_weight": 0.4,
        "drop_path": 0.1,
        "grad_clip": 5.0,
        "num_workers": 0,
    },
}

# The recipe used when only a dataset is given.
RECIPE_FOR_DATASET = {"cifar10": "cifar10", "cifar100": "cifar10", "imagenet": "imagenet",
                      "digits": "digits"}
