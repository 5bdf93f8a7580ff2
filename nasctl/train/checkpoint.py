"""The checkpoint layout, and loading a checkpoint back into a network.

A checkpoint is a plain dict (loads with ``torch.load(..., weights_only=True)``):

- ``model``: the network's state_dict (no DDP prefix), loadable into
  ``build_network(genotype_from_dict(ckpt["genotype"]), **ckpt["network"])``;
- ``genotype``: the genotype document (Contract 1); ``network``: the build_network kwargs;
- ``format``, ``version``, ``kind`` (``"train"``): the header every nasctl checkpoint has;
- ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (epochs completed), ``rng`` (one state
  per rank), ``config`` (the resolved TrainConfig), ``metrics`` (that epoch's numbers),
  ``best`` (best test top-1 so far and its epoch), ``versions``.
"""

from __future__ import annotations

import os
from typing import Any

from nasctl.errors import CheckpointError, GenotypeError, NasctlError
from nasctl.runs import FORMAT, VERSION, load_checkpoint

__all__ = ["FORMAT", "KIND", "VERSION", "load_model", "model_from_checkpoint", "read_checkpoint"]
KIND = "train"
REQUIRED_KEYS = ("model", "genotype", "network")
NETWORK_KEYS = ("dataset", "C", "layers", "num_classes", "auxiliary", "drop_path_on")


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check the layout; any problem is one CheckpointError naming the file."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind", KIND) != KIND:
        raise CheckpointError(
            f"{path}: a {ckpt.get('kind')} checkpoint, not a training one (export, eval and "
            "bench take a training checkpoint: last.pt or best.pt of nasctl train)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: not a nasctl training checkpoint (missing {', '.join(missing)})"
        )
    if ckpt.get("format", FORMAT) != FORMAT or ckpt.get("version", VERSION) != VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format {ckpt.get('format')!r} "
            f"version {ckpt.get('version')!r}"
        )
    network = ckpt["network"]
    if not isinstance(network, dict) or any(k not in network for k in NETWORK_KEYS):
        raise CheckpointError(f"{path}: \"network\" must hold {', '.join(NETWORK_KEYS)}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], where: str = "checkpoint") -> Any:
    """Rebuild the network a checkpoint was trained as and load its weights (CPU, eval)."""
    from nasctl.genotypes.io import genotype_from_dict
    from nasctl.nets import build_network

    try:
        genotype = genotype_from_dict(ckpt["genotype"])
        net = build_network(genotype, **ckpt["network"])
    except (GenotypeError, NasctlError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild the network: {exc}") from None
    try:
        net.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{where}: weights do not fit the network: {first}") from None
    return net.eval()


def load_model(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """``(network in eval mode, checkpoint dict)`` for a checkpoint file."""
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, str(path)), ckpt
