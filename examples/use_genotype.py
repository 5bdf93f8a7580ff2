"""Use a nasctl genotype in your own PyTorch training code (docs/using-genotypes.md).

Run: python examples/use_genotype.py [GENOTYPE_FILE_OR_ZOO_NAME]
"""

from __future__ import annotations

import sys

import torch

from nasctl.genotypes import load_genotype
from nasctl.nets import build_network


def main(source: str = "FairDARTS_a") -> None:
    genotype = load_genotype(source)  # a file written by `nasctl search`, or a zoo name

    # 1. The genotype as DARTS-family code expects it (only for cells with 2 inputs per
    #    node; FairDARTS cells with dead or single-input nodes use to_fairdarts()).
    try:
        print(genotype.to_darts())
    except Exception as exc:  # nasctl.errors.ConversionError
        print(f"not expressible as DARTS 2-tuples ({exc}); FairDARTS form:")
        print(genotype.to_fairdarts())

    # 2. The final network in plain PyTorch, at a small size for this demo.
    net = build_network(genotype, dataset="cifar10", C=8, layers=5, auxiliary=True,
                        drop_path=0.2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))

    net.train()
    logits, aux_logits = net(images)  # training mode with the auxiliary head: two outputs
    ce = torch.nn.functional.cross_entropy
    loss = ce(logits, labels) + 0.4 * ce(aux_logits, labels)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    optimizer.step()

    net.eval()
    with torch.no_grad():
        print("eval logits:", tuple(net(images).shape), "loss after one step:", float(loss))


if __name__ == "__main__":
    main(*sys.argv[1:2])
