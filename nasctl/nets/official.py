"""The official DARTS and FairDARTS checkpoint layouts, in and out.

- ``darts``: DARTS's ``train.py`` saves ``model.state_dict()`` bare. Its cells keep ops in
  genotype order (``cells.{i}._ops.{j}``), which is nasctl's own order, so the keys are
  nasctl's.
- ``fairdarts``: FairDARTS saves ``{"state_dict": ...}``; its cells keep ops by target and
  source node, ``cells.{i}._ops.{to}.{from}.{k}`` (``k`` counts ops on the same edge), and
  keep modules for ops whose source node is dead (never run; nasctl has no such modules,
  so they are dropped on import).
- ``nasctl``: a training checkpoint (``nasctl train``'s kind).

Everything else (stems, preprocessing, auxiliary head, classifier, the insides of each
op) is named alike in all three, and the networks compute the same function.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from nasctl.errors import CheckpointError, ConversionError

Layout = Literal["nasctl", "darts", "fairdarts"]
LAYOUTS: tuple[str, ...] = ("nasctl", "darts", "fairdarts")
_NASCTL_OP = re.compile(r"^cells\.(\d+)\._ops\.(\d+)\.(.+)$")
_FAIR_OP = re.compile(r"^cells\.(\d+)\._ops\.(\d+)\.(\d+)\.(\d+)\.(.+)$")


def _cell_ops(net: nn.Module) -> list[list[tuple[int, int, int, int]]]:
    """Per cell, ``(index into _ops, to, from, k)`` for every op of the network."""
    cells = []
    for cell in net.cells:  # type: ignore[union-attr]
        rows, seen = [], {}
        for node, inputs in cell._plan:
            for src, j in inputs:
                k = seen.get((node, src), 0)
                seen[(node, src)] = k + 1
                rows.append((j, node, src, k))
        cells.append(rows)
    return cells


def _live(net: nn.Module) -> list[set[int]]:
    return [{0, 1} | {node for node, _inputs in cell._plan}
            for cell in net.cells]  # type: ignore[union-attr]


def nasctl_to_fairdarts(state: dict[str, torch.Tensor], net: nn.Module
                        ) -> dict[str, torch.Tensor]:
    """Rename a nasctl/DARTS state_dict of ``net`` into FairDARTS's DCOCell keys."""
    names = [{j: f"{to}.{src}.{k}" for j, to, src, k in rows} for rows in _cell_ops(net)]
    out = {}
    for key, value in state.items():
        m = _NASCTL_OP.match(key)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            key = f"cells.{i}._ops.{names[i][j]}.{m.group(3)}"
        out[key] = value
    return out


def fairdarts_to_nasctl(state: dict[str, torch.Tensor], net: nn.Module
                        ) -> dict[str, torch.Tensor]:
    """Rename FairDARTS DCOCell keys into ``net``'s; ops reading a dead node are dropped."""
    index = [{(to, src, k): j for j, to, src, k in rows} for rows in _cell_ops(net)]
    live = _live(net)
    out = {}
    for key, value in state.items():
        m = _FAIR_OP.match(key)
        if m:
            i, to, src, k = (int(g) for g in m.groups()[:4])
            j = index[i].get((to, src, k)) if i < len(index) else None
            if j is None:
                if i < len(live) and (src not in live[i] or to not in live[i]):
                    continue  # the official cell keeps (never runs) ops of dead nodes
                j = -1  # reported as an unexpected key below
            key = f"cells.{i}._ops.{j}.{m.group(5)}" if j >= 0 else key
        out[key] = value
    return out


def detect_layout(obj: Any) -> Layout:
    """``nasctl`` for a training checkpoint, ``fairdarts`` for DCOCell keys (bare or under
    ``state_dict``), ``darts`` for a bare state_dict with genotype-ordered ops."""
    if isinstance(obj, dict) and "model" in obj and "genotype" in obj:
        return "nasctl"
    state = unwrap(obj)
    if any(_FAIR_OP.match(k) for k in state):
        return "fairdarts"
    return "darts"


def unwrap(obj: Any) -> dict[str, torch.Tensor]:
    """The network's state_dict inside an official file (``module.`` prefixes removed)."""
    if isinstance(obj, dict) and "model" in obj and "genotype" in obj:
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError("not a state_dict (expected a dict of tensors, bare or under "
                              "'state_dict' or 'model')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


@dataclass
class Settings:
    """The ``build_network`` settings an official state_dict was trained with."""

    dataset: str
    C: int  # noqa: N815 - the papers' name
    layers: int
    num_classes: int
    auxiliary: bool
    notes: list[str] = field(default_factory=list)


def detect_settings(state: dict[str, torch.Tensor], dataset: str | None = None) -> Settings:
    """CIFAR or ImageNet stem, C, cell count, classes and auxiliary head from the keys."""
    try:
        if "stem1.1.weight" in state:
            c, stem = int(state["stem1.1.weight"].shape[0]), "imagenet"
        else:
            c, stem = int(state["stem.0.weight"].shape[0]) // 3, "cifar10"
        classes = int(state["classifier.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"no {exc.args[0]} in the state_dict: not a DARTS-family "
                              "network") from None
    layers = 1 + max((int(m.group(1)) for k in state
                      if (m := re.match(r"^cells\.(\d+)\.", k))), default=-1)
    if dataset is None:
        dataset = stem if stem == "imagenet" else ("cifar100" if classes == 100 else "cifar10")
    aux = any(k.startswith("auxiliary_head.") for k in state)
    return Settings(dataset, c, layers, classes, aux)


def check_fit(state: dict[str, torch.Tensor], net: nn.Module, where: str) -> None:
    """Strict key and shape match, as one line naming the first mismatches."""
    want = net.state_dict()
    missing = [k for k in want if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in want]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in want.items()
              if k in state and state[k].shape != v.shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", extra), ("shape", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    if parts:
        raise CheckpointError(f"{where}: weights do not fit the genotype's network ("
                              f"{'; '.join(parts)}); is it the genotype the file was trained "
                              "with?")


def load_official(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)``; any problem is one CheckpointError."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise CheckpointError(f"{p}: no such file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{p}: cannot be read as a weights-only torch file: "
                              f"{first}") from None


def import_weights(path: str | os.PathLike[str], genotype: Any, layout: str = "auto",
                   dataset: str | None = None) -> dict[str, Any]:
    """A nasctl checkpoint (the kind ``nasctl train`` writes: ``nasctl eval``, ``export``
    and ``bench`` read it) holding the official file's weights for ``genotype``."""
    from nasctl.genotypes import Genotype, load_genotype
    from nasctl.genotypes.io import genotype_to_dict
    from nasctl.nets import build_network
    from nasctl.train.checkpoint import FORMAT, VERSION

    if layout not in ("auto", *LAYOUTS):
        raise CheckpointError(f"--layout must be auto, {', '.join(LAYOUTS)}; got {layout!r}")
    where = os.fspath(path)
    obj = load_official(path)
    found = detect_layout(obj)
    if layout != "auto" and layout != found and not {layout, found} <= {"darts", "nasctl"}:
        raise CheckpointError(f"{where}: --layout {layout}, but the keys are {found}'s")
    chosen = found if layout == "auto" else layout
    try:
        state = unwrap(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if not isinstance(genotype, Genotype):
        genotype = load_genotype(genotype)
    settings = detect_settings(state, dataset)
    drop_path_on = "node" if chosen == "fairdarts" else "edge"
    network = {"dataset": settings.dataset, "C": settings.C, "layers": settings.layers,
               "num_classes": settings.num_classes, "auxiliary": settings.auxiliary,
               "drop_path_on": drop_path_on}
    # a nasctl checkpoint, or a file `nasctl weights export` wrote, keeps its own settings
    # (the official layouts cannot hold the dataset or the drop-path rule)
    own = obj["network"] if chosen == "nasctl" else read_sidecar(where)
    if own is not None:
        network = _own_settings(own, network, dataset, where)
    net = build_network(genotype, **network)
    if chosen == "fairdarts":
        state = fairdarts_to_nasctl(state, net)
    check_fit(state, net, where)
    want = net.state_dict()
    model = {k: state[k].clone() if k in state else want[k] for k in want}
    return {"format": FORMAT, "version": VERSION, "model": model,
            "genotype": genotype_to_dict(genotype), "network": network, "epoch": None,
            "imported": {"file": os.path.basename(where), "layout": chosen}}


SIDECAR = "nasctl-weights-settings"


def sidecar_path(path: str | os.PathLike[str]) -> str:
    return f"{os.fspath(path)}.nasctl.json"


def sidecar(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What `nasctl weights export` writes beside an official file: the network settings
    the layout cannot hold, so `weights import` rebuilds the same network."""
    return {"format": SIDECAR, "version": 1, "network": ckpt["network"]}


def read_sidecar(path: str) -> dict[str, Any] | None:
    import json

    side = sidecar_path(path)
    if not os.path.isfile(side):
        return None
    try:
        with open(side, encoding="utf-8") as fh:
            doc = json.loads(fh.read(1 << 16))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{side}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR or doc.get("version") != 1:
        raise CheckpointError(f"{side}: not a {SIDECAR} version 1 file")
    return doc.get("network")


def _own_settings(own: Any, detected: dict[str, Any], dataset: str | None,
                  where: str) -> dict[str, Any]:
    """The file's own network settings, where the weights agree with them."""
    from nasctl.train.checkpoint import check_network

    check_network(own, where)
    for key in ("C", "layers", "num_classes"):
        if own[key] != detected[key]:
            raise CheckpointError(f"{where}: its settings say {key}={own[key]!r}, the weights "
                                  f"{detected[key]!r}")
    if dataset is not None and dataset != own["dataset"]:
        raise CheckpointError(f"{where}: the weights were trained on {own['dataset']}, not "
                              f"{dataset}; drop --dataset")
    return dict(own)


def export_weights(ckpt: dict[str, Any], layout: str) -> dict[str, Any]:
    """A nasctl checkpoint's weights in an official layout: DARTS's bare state_dict or
    FairDARTS's ``{"state_dict": ...}`` with DCOCell keys. The DARTS cell takes exactly two
    inputs per node, so a genotype it cannot hold is refused for ``darts``."""
    from nasctl.genotypes.convert import to_darts
    from nasctl.genotypes.io import genotype_from_dict
    from nasctl.train.checkpoint import model_from_checkpoint

    if layout not in ("darts", "fairdarts"):
        raise CheckpointError(f"--layout must be darts or fairdarts, got {layout!r}")
    net = model_from_checkpoint(ckpt)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if layout == "darts":
        try:
            to_darts(genotype_from_dict(ckpt["genotype"]))
        except ConversionError as exc:
            raise CheckpointError(f"--layout darts: {exc}") from None
        return state  # type: ignore[return-value]
    return {"state_dict": nasctl_to_fairdarts(state, net)}
