"""The house rules of the package layout, checked on the source: each layer imports only what
it may, so a newcomer can trust the folder names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The package-dir mapping of pyproject.toml: folder -> import prefix.
FOLDERS = {"engine": "camo_engine", "export": "camo_engine.export", "kernels": "camo_engine.kernels", "benchmarks": "camo_engine.benchmarks"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    prefix = FOLDERS[parts[0]]
    rest = [p for p in parts[1:] if p != "__init__"]
    return ".".join([prefix, *rest])


def imports_of(path: Path) -> set[str]:
    """Every camo_engine module a file imports, relative imports resolved (top level and inside
    functions alike)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "camo_engine" or m.startswith("camo_engine.")}


def library_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def offenders(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {m}"
        for path in files
        for m in sorted(imports_of(path))
        if any(m == f or m.startswith(f + ".") for f in forbidden)
    ]


def test_the_library_never_imports_the_cli():
    # engine/__main__.py is the command line's `python -m camo_engine` entry, not library code.
    files = [
        p for p in library_files("engine")
        if p.relative_to(ROOT / "engine").parts[0] not in ("cli", "__main__.py")
    ]
    files += library_files("export") + library_files("kernels")
    assert offenders(files, ("camo_engine.cli",)) == []


def test_only_the_bench_command_imports_the_benchmark_harness():
    files = library_files("engine") + library_files("export") + library_files("kernels")
    found = offenders(files, ("camo_engine.benchmarks",))
    # Non-empty: the check does see the one import it allows.
    assert found and all(line.startswith("engine/cli/bench.py ") for line in found), found


def test_the_attack_knows_no_backend_implementation():
    assert offenders(library_files("engine/attack"), (
        "camo_engine.backends.torch_backend",
        "camo_engine.backends.onnxruntime_backend",
        "camo_engine.export",
    )) == []


def test_export_depends_on_no_command_line_and_no_attack():
    assert offenders(library_files("export"), ("camo_engine.cli", "camo_engine.attack", "camo_engine.benchmarks")) == []


@pytest.mark.parametrize("statement", ["import camo_engine", "from camo_engine import Protector, AttackConfig, samples"])
def test_importing_the_library_loads_no_comparison_tool(statement):
    code = (
        f"{statement}\nimport sys\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torchattacks', 'art') "
        "or m.startswith('camo_engine.benchmarks') or m.startswith('camo_engine.cli'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == ""
