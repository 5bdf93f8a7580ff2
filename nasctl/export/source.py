"""What `nasctl export` and `nasctl bench` take as MODEL: a training checkpoint, a genotype
file or a zoo name, turned into an eval-mode, auxiliary-free network plus what a deployed
model needs to know about its inputs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nasctl.errors import CheckpointError, GenotypeError

if TYPE_CHECKING:
    from torch import nn

    from nasctl.genotypes import Genotype
    from nasctl.nets import DartsNetwork

SourceKind = Literal["checkpoint", "genotype", "zoo"]
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
BN_CALIBRATION_IMAGES = 16
RANDOM_WEIGHTS = (f"random (seed 0; BatchNorm statistics from {BN_CALIBRATION_IMAGES} "
                  "digits training images)")


@dataclass(frozen=True)
class ModelInfo:
    """What a report says about the model: where it came from and its input contract."""

    spec: str
    kind: SourceKind
    genotype: str | None
    genotype_hash: str
    dataset: str
    channels: int
    layers: int
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # "trained", or how the random weights were made

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "genotype": self.genotype,
                "genotype_hash": self.genotype_hash, "dataset": self.dataset,
                "C": self.channels, "layers": self.layers, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "mean": list(self.mean),
                "std": list(self.std), "weights": self.weights}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelInfo:
        return cls(doc["spec"], doc["kind"], doc["genotype"], doc["genotype_hash"],
                   doc["dataset"], doc["C"], doc["layers"], doc["num_classes"],
                   tuple(doc["input_shape"]), tuple(doc["mean"]), tuple(doc["std"]),
                   doc["weights"])


@dataclass
class ModelSource:
    """A network ready to export: eval mode, no auxiliary head."""

    net: DartsNetwork
    genotype: Genotype
    kind: SourceKind
    spec: str
    dataset: str
    channels: int
    layers: int
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    trained: bool
    dropped_keys: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.input_size, self.input_size)

    def describe(self) -> ModelInfo:
        return ModelInfo(self.spec, self.kind, self.genotype.name,
                         self.genotype.content_hash(), self.dataset, self.channels,
                         self.layers, self.num_classes, self.input_shape, self.mean, self.std,
                         "trained" if self.trained else RANDOM_WEIGHTS)


def load_model_source(spec: str | os.PathLike[str], dataset: str | None = None,
                      channels: int | None = None, layers: int | None = None,
                      seed: int = 0) -> ModelSource:
    """Resolve MODEL. ``dataset``/``channels``/``layers`` apply to genotypes and zoo names
    (a checkpoint carries its own network settings and refuses conflicting ones)."""
    text = os.fspath(spec)
    path = Path(text)
    if path.suffix in CHECKPOINT_SUFFIXES or (path.is_file() and not text.endswith(".json")):
        return _from_checkpoint(path, dataset, channels, layers)
    return _from_genotype(text, dataset or "cifar10", channels, layers, seed)


def _from_genotype(text: str, dataset: str, channels: int | None, layers: int | None,
                   seed: int) -> ModelSource:
    import torch

    from nasctl.genotypes.sources import read_any
    from nasctl.nets import build_network, dataset_settings

    genotype = read_any(text)
    settings = dataset_settings(dataset)
    # Random weights, but always the same ones: parity and latency runs are reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(genotype, dataset=dataset, C=channels, layers=layers, auxiliary=False)
        _realistic_batchnorm(net, dataset, seed)
    kind: SourceKind = "genotype" if Path(text).exists() else "zoo"
    return _finish(net, genotype, kind, text, dataset, channels or settings.channels,
                   layers or settings.layers, settings.num_classes, trained=False)


def _realistic_batchnorm(net: nn.Module, dataset: str, seed: int) -> None:
    """Give a random network trained-looking BatchNorms: random affine parameters and
    running statistics measured on real images. Fresh BNs are identities (gamma 1, beta 0,
    mean 0, var 1): folding them tests nothing, and the exporters deduplicate the
    identical zero biases. Real statistics also keep activations well scaled through 20
    cells, so parity compares meaningful logits."""
    import torch
    from torch import nn

    from nasctl.data import dataset_info
    from nasctl.deploy.inputs import sample_images

    info = dataset_info(dataset)
    images = torch.from_numpy(sample_images(BN_CALIBRATION_IMAGES, info.input_size, info.mean,
                                            info.std, split="train", seed=seed))
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            if bn.affine:
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
        net.train()
        net(images)
    for bn in bns:
        bn.momentum = 0.1
    net.eval()


def _from_checkpoint(path: Path, dataset: str | None, channels: int | None,
                     layers: int | None) -> ModelSource:
    from nasctl.genotypes.io import genotype_from_dict
    from nasctl.nets import build_network, dataset_settings
    from nasctl.runs import load_checkpoint
    from nasctl.train.checkpoint import check_network

    state = load_checkpoint(path)
    missing = [k for k in ("genotype", "network", "model") if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a nasctl training checkpoint (missing {', '.join(missing)})"
        )
    try:
        genotype = genotype_from_dict(state["genotype"])
    except GenotypeError as exc:
        raise CheckpointError(f"{path}: bad genotype inside the checkpoint: {exc}") from None
    kwargs = dict(check_network(state["network"], str(path), required=()))
    for name, given in (("dataset", dataset), ("C", channels), ("layers", layers)):
        if given is not None and kwargs.get(name) is not None and kwargs[name] != given:
            raise CheckpointError(
                f"{path}: the checkpoint was trained with {name}={kwargs[name]!r}, "
                f"not {given!r}; drop the option"
            )
    ds = kwargs.get("dataset", "cifar10")
    settings = dataset_settings(ds)
    net = build_network(genotype, dataset=ds, C=kwargs.get("C"), layers=kwargs.get("layers"),
                        num_classes=kwargs.get("num_classes"), auxiliary=False)
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
        raise CheckpointError(f"{path}: \"model\" is not a state dict (names to tensors)")
    dropped = sorted(k for k in weights if k.startswith("auxiliary_head."))
    kept = {k: v for k, v in weights.items() if not k.startswith("auxiliary_head.")}
    misfit = weights_misfit(net.state_dict(), kept)
    if misfit is not None:
        raise CheckpointError(
            f"{path}: weights do not fit the network the checkpoint describes: {misfit}"
        )
    net.load_state_dict(kept, strict=True)
    return _finish(net, genotype, "checkpoint", str(path), ds,
                   kwargs.get("C") or settings.channels, kwargs.get("layers") or settings.layers,
                   kwargs.get("num_classes") or settings.num_classes, trained=True,
                   dropped=dropped)


def weights_misfit(expected: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    """What keeps ``given`` weights from loading strictly into a network whose state dict
    is ``expected``: counts, and the first key of each kind with its shapes; None if they
    fit."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [k for k in expected if k in given and _shape(given[k]) != _shape(expected[k])]
    parts = []
    if reshaped:
        key = reshaped[0]
        shape = _shape(given[key])
        ours = "not a tensor" if shape is None else list(shape)
        parts.append(f"{len(reshaped)} of another shape (first {key}: checkpoint {ours}, "
                     f"network {list(expected[key].shape)})")
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {str(unexpected[0])[:80]})")
    return "; ".join(parts) or None


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def is_onnx_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file holds an ONNX model (by content: it parses as an ONNX ModelProto
    with graph nodes), to tell a user who passed one where a checkpoint was expected."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        return False
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeWarning):
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def _finish(net: DartsNetwork, genotype: Genotype, kind: SourceKind, spec: str, dataset: str,
            channels: int, layers: int, num_classes: int, trained: bool,
            dropped: list[str] | None = None) -> ModelSource:
    from nasctl.data import dataset_info

    info = dataset_info(dataset)
    net.eval()
    return ModelSource(net=net, genotype=genotype, kind=kind, spec=spec, dataset=dataset,
                       channels=channels, layers=layers, num_classes=num_classes,
                       input_size=info.input_size, mean=info.mean, std=info.std,
                       trained=trained, dropped_keys=dropped or [])
