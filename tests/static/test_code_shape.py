"""Static checks of the code's shape: the layers' imports, docstrings, and flows that only wire.

The pure core (`core/`) loads neither Prefect nor MLflow and reads no environment; MLflow is
imported only by the edge modules that talk to it; Prefect only by `tasks/`, `flows/`,
`deployments/` and `cli/`; retries only on the edges.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tasks", "flows", "deployments", "cli")
MLFLOW_EDGES = {"tasks/tracking.py", "tasks/registry.py", "tasks/monitoring.py", "tasks/recovery.py"}
RETRYING_EDGES = MLFLOW_EDGES | {"tasks/ingest.py", "tasks/publish.py"}
PREFECT_LAYERS = ("tasks", "flows", "deployments", "cli")
# Modules the command line imports before Prefect reads its settings.
BEFORE_PREFECT = ("cli.process", "cli.servers", "tasks.settings", "core.config", "core.errors")


def modules() -> list[Path]:
    """Every Python module of the project's packages."""
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def relative(path: Path) -> str:
    """`path` relative to the repository, with forward slashes."""
    return path.relative_to(REPO).as_posix()


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth of its code."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def loaded_after_import(names: tuple[str, ...]) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after importing `names`."""
    code = f"import sys\nfor name in {list(names)!r}:\n    __import__(name)\nprint(' '.join(sys.modules))"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return {name.split(".")[0] for name in completed.stdout.split()}


def test_importing_the_core_loads_neither_prefect_nor_mlflow() -> None:
    core = tuple(f"core.{path.stem}" for path in (REPO / "core").glob("*.py") if path.stem != "__init__")
    loaded = loaded_after_import(core)
    assert "core" in loaded and "sklearn" in loaded  # the import really ran
    assert not {"prefect", "mlflow"} & loaded


def test_the_command_line_sets_up_its_process_before_prefect_is_loaded() -> None:
    assert not {"prefect", "mlflow"} & loaded_after_import(BEFORE_PREFECT)


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_each_layer_imports_only_what_it_may(path: Path) -> None:
    roots = imported_roots(path)
    where = relative(path)
    if "mlflow" in roots:
        assert where in MLFLOW_EDGES, f"{where} imports mlflow; only {sorted(MLFLOW_EDGES)} may"
    if "prefect" in roots or "prefect_dask" in roots:
        assert where.startswith(PREFECT_LAYERS), f"{where} imports prefect outside {PREFECT_LAYERS}"
    if where.startswith("core/"):
        assert not roots & {"tasks", "flows", "deployments", "cli"}, f"{where} imports an outer layer"
    if where.startswith("tasks/"):
        assert not roots & {"flows", "deployments", "cli"}, f"{where} imports a layer above tasks"
    if where.startswith("flows/"):
        assert not roots & {"deployments", "cli"}, f"{where} imports a layer above flows"
    if where.startswith("deployments/"):
        assert "cli" not in roots, f"{where} imports the command line"


@pytest.mark.parametrize("path", sorted((REPO / "core").glob("*.py")), ids=relative)
def test_the_core_reads_no_environment(path: Path) -> None:
    tree = ast.parse(path.read_text())
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}
    ]
    assert reads == [], f"{relative(path)} reads the environment at lines {reads}"


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_only_the_edges_retry(path: Path) -> None:
    text = path.read_text()
    retries = "**io_edge_options()" in text or "retries=" in text
    if retries:
        assert relative(path) in RETRYING_EDGES, f"{relative(path)} retries but is not an I/O edge"


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_every_module_says_its_one_job(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 5, f"{relative(path)} has no docstring saying its job"


@pytest.mark.parametrize("path", sorted((REPO / "flows").glob("*.py")), ids=relative)
def test_flows_are_wiring_in_short_functions(path: Path) -> None:
    long = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60
    ]
    assert long == [], f"{relative(path)} has functions over 60 lines: {long}"


def test_the_code_passes_the_linter() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
