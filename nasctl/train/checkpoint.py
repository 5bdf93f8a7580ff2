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
    check_network(ckpt["network"], str(path))
    return ckpt


def check_network(network: Any, where: str, required: tuple[str, ...] = NETWORK_KEYS,
                  ) -> dict[str, Any]:
    """A checkpoint's ``network`` block under a strict schema: known keys only (those of
    ``required`` present), each of its type and within nasctl's limits."""
    from nasctl.data import DATASETS
    from nasctl.settings import MAX_CELLS, MAX_CHANNELS, MAX_CLASSES

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f'{where}: "network" {problem}')

    if not isinstance(network, dict):
        raise bad(f"must be a table of {', '.join(NETWORK_KEYS)}")
    unknown = sorted(str(k) for k in network if k not in NETWORK_KEYS)
    missing = [k for k in required if k not in network]
    if unknown or missing:
        raise bad("has unknown " + ", ".join(unknown) if unknown else
                  "lacks " + ", ".join(missing))
    ranges = {"C": (1, MAX_CHANNELS), "layers": (3, MAX_CELLS),
              "num_classes": (1, MAX_CLASSES)}
    for key, (low, high) in ranges.items():
        value = network.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad(f"{key} must be an integer from {low} to {high}, got {value!r}")
    checks = (("dataset", tuple(DATASETS)), ("drop_path_on", ("edge", "node", None)),
              ("auxiliary", (True, False)))
    for key, allowed in checks:
        if key in network and not any(network[key] is a or (
                isinstance(a, str) and network[key] == a) for a in allowed):
            names = ", ".join("none" if a is None else str(a).lower() for a in allowed)
            raise bad(f"{key} must be one of {names}, got {network[key]!r}")
    return network


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
