"""Check the TensorRT names nasctl uses against the TensorRT 11 Python bindings and write
the ones found to tests/data/tensorrt11_names.txt (tests/test_tensorrt_types.py then fails
when nasctl starts using a name that is not in that file).

TensorRT cannot be installed from PyPI alone, but the `tensorrt-cu13-bindings` wheel holds
the Python module `tensorrt_bindings/tensorrt.so`, whose pybind11 names (classes, methods,
properties, enum values) are NUL-terminated strings in the file. It is read as bytes, never
loaded. A name counts as present when it ends such a string (the linker shares tails:
``INT8`` is stored as the end of ``UINT8``); docstring mentions do not count.

The names nasctl uses come from the source by AST (`tensorrt_names`): attribute chains
rooted at the `tensorrt` module alias, and attributes read on values that come from it
(annotated with a TensorRT type, assigned from a TensorRT call, or returned by a method of
a TensorRT object), plus the methods a subclass of a TensorRT class overrides.

    python tools/tensorrt11_names.py [--wheel FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("nasctl/export/tensorrt.py", "nasctl/deploy/trt_runtime.py")
OUT = ROOT / "tests" / "data" / "tensorrt11_names.txt"
WHEEL = "tensorrt-cu13-bindings==11.4.0.106"
MODULE = "tensorrt_bindings/tensorrt.so"
# removed in TensorRT 11: none may be found, or the presence rule does not discriminate
CONTROLS = ("int8_calibrator", "platform_has_fast_fp16", "platform_has_fast_int8",
            "set_calibration_profile", "IInt8EntropyCalibrator2", "algorithm_selector",
            "OBEY_PRECISION_CONSTRAINTS")


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _mentions(annotation: ast.expr | None, alias: str) -> bool:
    return annotation is not None and f"{alias}." in ast.unparse(annotation)


def tensorrt_names(source: str, alias: str = "trt") -> set[str]:
    """The TensorRT attribute names ``source`` reads (module ``tensorrt`` imported as
    ``alias``); dunders are left out."""
    tree = ast.parse(source)
    tracked: set[str] = set()  # variables and self attributes holding TensorRT objects
    returns_trt = {f.name for f in ast.walk(tree)
                   if isinstance(f, ast.FunctionDef) and _mentions(f.returns, alias)
                   and not ast.unparse(f.returns).startswith("tuple")}

    def is_trt(node: ast.expr) -> bool:
        name = _dotted(node)
        if name is not None and (name == alias or name in tracked):
            return True
        if isinstance(node, ast.Attribute):
            return is_trt(node.value)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                return node.func.id in returns_trt
            return is_trt(node.func)
        return False

    def track(target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for t, v in zip(target.elts, value.elts, strict=False):
                track(t, v)
        elif value is not None and is_trt(value) and (name := _dotted(target)):
            tracked.add(name)

    for _ in range(5):  # to a fixed point: assignments may come before their use
        before = len(tracked)
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and _mentions(node.annotation, alias):
                tracked.add(node.arg)
            elif isinstance(node, ast.AnnAssign):
                if _mentions(node.annotation, alias) and (name := _dotted(node.target)):
                    tracked.add(name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    track(target, node.value)
        if len(tracked) == before:
            break
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_trt(node.value):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef) and any(is_trt(b) for b in node.bases):
            names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    return {n for n in names if not n.startswith("__")}


def names_used() -> set[str]:
    return set().union(*(tensorrt_names((ROOT / p).read_text()) for p in SOURCES))


def present(name: str, module: bytes) -> bool:
    """``name`` ends a NUL-terminated string of the compiled module."""
    return (name.encode() + b"\0") in module


def _download(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL,
                    "-d", str(folder)], check=True)
    return next(folder.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL} wheel")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or _download(Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            module = z.read(MODULE)
    found_controls = [n for n in CONTROLS if present(n, module)]
    if found_controls:
        print(f"removed names found in {wheel.name}: {', '.join(found_controls)}; the "
              "presence rule does not hold for this wheel", file=sys.stderr)
        return 1
    used = names_used()
    found = sorted(n for n in used if present(n, module))
    missing = sorted(used - set(found))
    header = (f"# TensorRT names nasctl uses ({', '.join(SOURCES)}) found in {wheel.name}\n"
              f"# ({MODULE}); generated by tools/tensorrt11_names.py, one name a line\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "".join(f"{n}\n" for n in found))
    print(f"{len(found)} of {len(used)} names found; wrote {args.out}")
    if missing:
        print(f"not in TensorRT 11: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
