"""Type-check our TensorRT calls against the tensorrt-stubs package with mypy.

TensorRT itself cannot be installed here, so this is what keeps the engine builder and the
native runtime honest: every call, attribute and override must match the TensorRT 10 API
the stubs describe. The stubs live in ``.typestubs/`` of the checkout, where only mypy
(through MYPYPATH) reads them: in site-packages they would make ``import tensorrt``
succeed as an empty namespace package. The stubs package ships a bare ``tensorrt/`` folder without a
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


STUBS = ROOT / ".typestubs"  # the README's install puts tensorrt-stubs here, off sys.path
STUBS_INSTALL = ("pip install --no-deps --target .typestubs tensorrt-stubs==10.13.0.35.1")


def _stub_dir(name: str) -> Path | None:
    folder = STUBS / name
    return folder if any(folder.glob("*.pyi")) else None


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
        pytest.fail(f"tensorrt-stubs are not in {STUBS}; the README's install command puts "
                    f"them there ({STUBS_INSTALL})")
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


# --- TensorRT 11 ------------------------------------------------------------------------

# Removed in TensorRT 11 with weak typing (../shared facts; NVIDIA's 11.0 release notes):
# the stubs describe 10.x, where these still exist, so mypy cannot catch them.
REMOVED_IN_11 = {
    *(f"BuilderFlag.{flag}" for flag in (
        "FP16", "INT8", "FP8", "BF16", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
        "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO")),
    "int8_calibrator", "set_calibration_profile", "get_calibration_profile",
    "platform_has_fast_fp16", "platform_has_fast_int8", "algorithm_selector",
    "IInt8Calibrator", "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2",
    "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator", "IAlgorithmSelector",
    "device_memory_size",
}


def tensorrt_names_used(path: Path) -> set[str]:
    """Every attribute name read in ``path`` (TensorRT's objects are reached through many
    variables), with builder flags qualified: ``DataType.INT8`` stays legal in 11."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parent = node.value
            qualified = isinstance(parent, ast.Attribute) and parent.attr == "BuilderFlag"
            names.add(f"BuilderFlag.{node.attr}" if qualified else node.attr)
    return names


def test_no_name_removed_in_tensorrt_11_is_used() -> None:
    modules = [p for p in (ROOT / "nasctl").rglob("*.py") if "tensorrt" in p.read_text()]
    assert set(CHECKED) <= set(modules)
    used = {p.relative_to(ROOT).as_posix(): tensorrt_names_used(p) & REMOVED_IN_11
            for p in modules}
    assert not any(used.values()), used


def test_the_removed_name_check_sees_weak_typing(tmp_path: Path) -> None:
    """The control: TensorRT 10 weak-typing code is caught."""
    old = tmp_path / "old_trt.py"
    old.write_text("def f(trt, config, builder):\n"
                   "    config.set_flag(trt.BuilderFlag.FP16)\n"
                   "    config.int8_calibrator = None\n"
                   "    return builder.platform_has_fast_fp16\n")
    assert tensorrt_names_used(old) & REMOVED_IN_11 == {
        "BuilderFlag.FP16", "int8_calibrator", "platform_has_fast_fp16"}


def test_tensorrt_is_importable_only_as_the_real_library() -> None:
    """The README's install leaves no stub package on sys.path: ``import tensorrt`` either
    fails or finds the real library (with a Builder)."""
    spec = importlib.util.find_spec("tensorrt")
    if spec is not None:
        import tensorrt

        assert hasattr(tensorrt, "Builder"), f"type stubs importable as tensorrt: {spec.origin}"


# --- the TensorRT 11 bindings -----------------------------------------------------------

def _names_tool():  # tools/ is not a package: load the generator by path
    spec = importlib.util.spec_from_file_location("tensorrt11_names",
                                                  ROOT / "tools" / "tensorrt11_names.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES_FILE = ROOT / "tests" / "data" / "tensorrt11_names.txt"


def test_every_tensorrt_name_used_is_in_the_tensorrt_11_bindings() -> None:
    """tests/data/tensorrt11_names.txt holds the names found in tensorrt-cu13-bindings
    11.4 (tools/tensorrt11_names.py reads them from its compiled module); a name used now
    but not there must be checked by rerunning that script."""
    tool = _names_tool()
    recorded = {line.strip() for line in NAMES_FILE.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    used = tool.names_used()
    assert {"build_serialized_network", "STRONGLY_TYPED", "execute_async_v3"} <= used
    missing = sorted(used - recorded)
    assert not missing, (f"not checked against TensorRT 11: {missing}; run "
                         "python tools/tensorrt11_names.py")


def test_the_name_extraction_follows_tensorrt_objects_only() -> None:
    """The control: names reached from the tensorrt module count, other attributes and
    dunders do not."""
    source = textwrap.dedent("""\
        import tensorrt as trt

        class Quiet(trt.ILogger):
            def log(self, severity, msg):
                self.last = msg

        def build(path, logger: trt.ILogger) -> str:
            builder = trt.Builder(logger)
            network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.X))
            shape = network.get_input(0).shape
            engine, text = builder.build_serialized_network(network, None), path.read_text()
            print(trt.__version__, logger.min_severity, engine.nbytes, text.strip(), shape)
            return path.name
    """)
    assert _names_tool().tensorrt_names(source) == {
        "ILogger", "log", "Builder", "create_network", "NetworkDefinitionCreationFlag", "X",
        "get_input", "shape", "build_serialized_network", "min_severity", "nbytes"}


def test_the_presence_rule_reads_nul_terminated_names() -> None:
    tool = _names_tool()
    module = b"docs: set BuilderFlag.FP16 here\0TF32\0UINT8\0IBuilderConfig\0"
    assert tool.present("TF32", module) and tool.present("INT8", module)  # a shared tail
    assert not tool.present("FP16", module) and not tool.present("IBuilder", module)
