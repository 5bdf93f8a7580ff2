"""Load a `nasctl train` checkpoint into plain PyTorch and classify a few test images.

    python examples/load_checkpoint.py runs/t/best.pt [DATA_DIR]

A checkpoint holds the genotype ("genotype"), the arguments of `build_network` ("network")
and the weights ("model"), so nothing but nasctl's network builder is needed to use it in
other training or inference code.
"""

from __future__ import annotations

import json
import sys

import torch

from nasctl.data import get_dataset
from nasctl.genotypes.io import genotype_from_dict
from nasctl.nets import build_network


def load(path: str) -> torch.nn.Module:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    genotype = genotype_from_dict(ckpt["genotype"])
    net = build_network(genotype, **ckpt["network"])
    net.load_state_dict(ckpt["model"])
    return net.eval()  # eval mode: logits only, no auxiliary head, no drop-path


def main(path: str, data_dir: str | None = None) -> None:
    net = load(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    test = get_dataset(ckpt["network"]["dataset"], "test", data_dir=data_dir)
    images, labels = zip(*(test[i] for i in range(32)), strict=True)
    with torch.no_grad():
        predictions = net(torch.stack(images)).argmax(dim=1).tolist()
    correct = sum(p == y for p, y in zip(predictions, labels, strict=True))
    print(json.dumps({"predictions": predictions, "labels": list(labels),
                      "correct": correct, "total": len(labels)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
