"""The ``mbconv-chain`` genotype: file round trip, validation with one clear line per
problem, converters that refuse it, and the darts-cell path left as it was."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nasctl.errors import ConversionError, GenotypeError
from nasctl.genotypes import load_genotype, read_genotype, write_genotype, write_graphml
from nasctl.genotypes.chain import MBCONV_CHAIN, chain_layers, make_chain
from nasctl.genotypes.io import genotype_from_dict, genotype_to_dict
from nasctl.nets.mbconv import PROXYLESS_S2, chain_genotype, searchable_slots

OPS = ["mbconv_k3_e3", "mbconv_k5_e6", "skip", "mbconv_k7_e3"] + ["mbconv_k3_e6"] * 17


def _good() -> dict:
    return genotype_to_dict(chain_genotype(PROXYLESS_S2, OPS, name="chain_a"))


def test_layout_has_the_proxylessnas_search_shape() -> None:
    slots = searchable_slots(PROXYLESS_S2)
    assert len(slots) == 21
    assert [s.stride for s in slots].count(2) == 4  # plus the stem: 224 -> 7
    # skip is allowed exactly where a layer keeps its shape: not at a stage's first
    # layer, nor at the 80 -> 96 (stride 1) or 192 -> 320 transitions.
    assert sum(s.allows_skip for s in slots) == 15
    assert not slots[12].allows_skip and slots[12].stride == 1  # 80 -> 96


def test_round_trip_keeps_every_layer_attribute(tmp_path: Path) -> None:
    g = chain_genotype(PROXYLESS_S2, OPS, name="chain_a", provenance={"method": "fairdarts"})
    path = write_genotype(g, tmp_path / "chain.genotype.json")
    back = read_genotype(path)
    assert back.search_space == MBCONV_CHAIN
    assert back.cells_data() == g.cells_data()
    assert back.content_hash() == g.content_hash()
    layers = chain_layers(back.cells["chain"])
    assert len(layers) == 22  # the fixed expansion-1 layer, then 21 searchable ones
    assert layers[0] == {"op": "mbconv_k3_e1", "in_channels": 32, "out_channels": 16,
                         "stride": 1, "kernel": 3, "expansion": 1}
    assert layers[3] == {"op": "skip", "in_channels": 24, "out_channels": 24, "stride": 1,
                         "kernel": None, "expansion": None}
    doc = json.loads(path.read_text())
    assert doc["cells"]["chain"]["graph"] == {"stem_channels": 32, "head_channels": 1280}
    assert load_genotype(str(path)) == back


def test_different_choices_hash_differently() -> None:
    a = chain_genotype(PROXYLESS_S2, OPS)
    b = chain_genotype(PROXYLESS_S2, ["mbconv_k7_e6"] + OPS[1:])
    assert a.content_hash() != b.content_hash()


def test_graphml_export(tmp_path: Path) -> None:
    text = write_graphml(chain_genotype(PROXYLESS_S2, OPS), tmp_path / "g.graphml").read_text()
    assert "mbconv_k5_e6" in text and "chain:21" in text


@pytest.mark.parametrize("convert", ["to_darts", "to_fairdarts", "to_nni"])
def test_converters_refuse_a_chain(convert: str) -> None:
    with pytest.raises(ConversionError, match="mbconv-chain"):
        getattr(chain_genotype(PROXYLESS_S2, OPS), convert)()


def _edit(fn) -> dict:
    doc = _good()
    fn(doc)
    return doc


def _nodes(doc: dict) -> list[dict]:
    return doc["cells"]["chain"]["nodes"]


BAD: dict[str, tuple[dict, str]] = {
    "missing chain cell": (_edit(lambda d: d["cells"].pop("chain")), "missing cell 'chain'"),
    "extra cell": (_edit(lambda d: d["cells"].update(normal=d["cells"]["chain"])),
                   "unknown cells ['normal']; expected chain"),
    "unknown op": (_edit(lambda d: _nodes(d)[2].update(op="mbconv_k9_e6")),
                   "layer 2 has unknown op 'mbconv_k9_e6'"),
    "op disagrees with kernel": (_edit(lambda d: _nodes(d)[1].update(kernel=7)),
                                 "layer 1: op mbconv_k3_e3 says kernel 3"),
    "skip that changes shape": (_edit(lambda d: _nodes(d)[1].update(
        op="skip", kernel=None, expansion=None)), "skip needs stride 1"),
    "widths do not chain": (_edit(lambda d: _nodes(d)[6].update(in_channels=41)),
                            "layer 6: in_channels is 41 but layer 5 outputs 40"),
    "first layer vs stem": (_edit(lambda d: d["cells"]["chain"]["graph"].update(
        stem_channels=24)), "layer 0: in_channels is 32 but the stem outputs 24"),
    "bad stride": (_edit(lambda d: _nodes(d)[4].update(stride=3)), "stride must be 1 or 2"),
    "missing head width": (_edit(lambda d: d["cells"]["chain"]["graph"].pop("head_channels")),
                           "'head_channels' must be a positive integer"),
    "edge skips a layer": (_edit(lambda d: d["cells"]["chain"]["edges"].append(
        {"source": 0, "target": 2})), "edge 0 -> 2 is not allowed"),
    "edge missing": (_edit(lambda d: d["cells"]["chain"]["edges"].pop(3)),
                     "edge 3 -> 4 is missing"),
    "edge to nowhere": (_edit(lambda d: d["cells"]["chain"]["edges"].append(
        {"source": 21, "target": 22})), "names node 22, which is not a layer"),
    "node gap": (_edit(lambda d: _nodes(d).pop()), "edge 20 -> 21 names node 21"),
    "unknown attribute": (_edit(lambda d: _nodes(d)[0].update(se=True)),
                          "unknown attributes ['se']"),
    "string width": (_edit(lambda d: _nodes(d)[2].update(out_channels="24")),
                     "out_channels must be a positive integer"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_chain_is_refused_with_one_clear_line(case: str) -> None:
    doc, expected = BAD[case]
    with pytest.raises(GenotypeError) as info:
        genotype_from_dict(copy.deepcopy(doc))
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_make_chain_validates_too() -> None:
    layer = {"op": "skip", "in_channels": 8, "out_channels": 16, "stride": 1}
    with pytest.raises(GenotypeError, match="skip needs stride 1"):
        make_chain([layer], stem_channels=8, head_channels=32)


def test_cli_refuses_a_bad_chain_file_in_one_line(tmp_path: Path) -> None:
    doc, expected = BAD["widths do not chain"]
    path = tmp_path / "bad.genotype.json"
    path.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-m", "nasctl", "genotypes", "show", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in proc.stderr
