"""Type-check our TensorRT calls against the tensorrt-stubs package with mypy.

TensorRT itself cannot be installed here, so this is what keeps the engine builder and the
native runtime honest: every call, attribute and override must match the TensorRT 10 API
the stubs describe. The stubs package ships a bare ``tensorrt/`` folder without a
``py.typed`` marker (mypy ignores such a folder) and a few unparsable plugin signatures;
the test copies the stubs, replaces only the unparsable signatures with ``(*args, **kwargs)``
and points mypy at the copy. A deliberately wrong call must fail, which proves the stubs
are really in use.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [ROOT / "nasctl/export/tensorrt.py", ROOT / "nasctl/deploy/trt_runtime.py"]

CONFIG = """\
[mypy]
python_version = 3.11
follow_imports = silent
warn_unused_ignores = True
check_untyped_defs = True
cache_dir = {cache}

[mypy-torch.*,numpy.*,onnx.*,onnxruntime.*,networkx.*,nasctl.*]
follow_imports = skip

[mypy-tensorrt_libs.*]
ignore_missing_imports = True

# the stubs themselves have errors (names shadowing builtins, pybind11 leftovers)
[mypy-tensorrt.*,tensorrt_bindings.*]
ignore_errors = True
"""


def _stub_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if any(Path(location).glob("*.pyi")):
            return Path(location)
    return None


def _repair(path: Path) -> int:
    """Replace the parameter lists of unparsable stub signatures; returns how many."""
    lines = path.read_text().splitlines()
    fixed = 0
    for _ in range(100):
        text = "\n".join(lines) + "\n"
        try:
            ast.parse(text, filename=str(path))
            path.write_text(text)
            return fixed
        except SyntaxError as exc:
            idx = (exc.lineno or 1) - 1
            match = re.match(r"^(\s*def \w+)\(.*\)(\s*->.*:\s*)$", lines[idx])
            if match is None:
                raise AssertionError(f"unexpected stub syntax error {exc}") from None
            lines[idx] = f"{match.group(1)}(self, *args: typing.Any, **kwargs: typing.Any)" \
                         f"{match.group(2)}"
            fixed += 1
    raise AssertionError(f"too many syntax errors in {path}")


@pytest.fixture(scope="module")
def mypy_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from nasctl.export.tensorrt import tensorrt_unavailable_reason

    if tensorrt_unavailable_reason() is None:
        pytest.skip("the real TensorRT is installed here; this check runs where only the "
                    "stubs are (CI)")
    stubs_pkg = _stub_dir("tensorrt")
    bindings = _stub_dir("tensorrt_bindings")
    if stubs_pkg is None or bindings is None or not (stubs_pkg / "__init__.pyi").exists():
        pytest.fail("tensorrt-stubs is not installed; the README's install command adds it "
                    "(pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    tmp = tmp_path_factory.mktemp("trt_stubs")
    stubs = tmp / "stubs"
    for src in (stubs_pkg, bindings):
        dest = stubs / src.name
        dest.mkdir(parents=True)
        for pyi in src.glob("*.pyi"):
            shutil.copy(pyi, dest / pyi.name)
            _repair(dest / pyi.name)
    config = tmp / "mypy.ini"
    config.write_text(CONFIG.format(cache=tmp / "cache"))
    return stubs, config


def _mypy(files: list[Path], env: tuple[Path, Path],
          monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    stubs, config = env
    monkeypatch.setenv("MYPYPATH", str(stubs))
    out, err, status = mypy_api.run(["--config-file", str(config), "--no-incremental",
                                     *map(str, files)])
    return out + err, status


def test_tensorrt_modules_match_the_stubs(mypy_env: tuple[Path, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    report, status = _mypy(CHECKED, mypy_env, monkeypatch)
    assert status == 0, report


def test_a_wrong_tensorrt_call_fails(mypy_env: tuple[Path, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: if the stubs were not really used, trt would be Any and this passes."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text(textwrap.dedent("""\
        import tensorrt as trt

        def build(logger: trt.ILogger) -> None:
            builder = trt.Builder(logger)
            config = builder.create_builder_config()
            config.set_memory_pool_limit("workspace", 1 << 30)
            config.max_workspace_size = 1 << 30  # TensorRT 8 API, removed in 10
            builder.build_engine(builder.create_network(0), config)  # removed in 10
    """))
    report, status = _mypy([bad], mypy_env, monkeypatch)
    assert status == 1, report
    assert 'Argument 1 to "set_memory_pool_limit"' in report, report
    assert '"IBuilderConfig" has no attribute "max_workspace_size"' in report, report
    assert '"Builder" has no attribute "build_engine"' in report, report
