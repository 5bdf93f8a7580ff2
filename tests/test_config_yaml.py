"""A YAML --config: read with PyYAML when it is installed, else refused in one line that
says what to install (PyYAML is not in nasctl's install)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nasctl.errors import NasctlError
from nasctl.train.config import load_config_file


def test_yaml_without_pyyaml_names_the_install(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    with pytest.raises(NasctlError) as info:
        load_config_file(path)
    message = str(info.value)
    assert "pip install pyyaml" in message and "\n" not in message and str(path) in message


def test_yaml_with_pyyaml_is_read(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "c.yml"
    path.write_text("epochs: 3\nlr: 0.05\n")
    assert load_config_file(path) == {"epochs": 3, "lr": 0.05}
