"""The import graph follows the data path: capture → fit → match → store, drivers on top, and
the app reads the store through `tracker.reader` only (README "Layout")."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = {
    "capture": [
        "schedule",
        "probe",
        "capture",
        "snapshots",
        "activations",
        "checks",
        "saved",
        "text",
    ],
    "fit": ["config", "pace", "sae", "fit", "calibration", "checkpoint"],
    "match": [
        "assign",
        "witness",
        "side",
        "results",
        "splits",
        "match",
        "links",
        "confirm",
        "chain",
        "lineage",
    ],
    "store": [
        "panels",
        "db",
        "store",
        "evidence",
        "comparison",
        "across",
        "overview",
        "reader",
        "export",
    ],
    "drivers": [
        "resume",
        "remote",
        "pipeline",
        "fitter",
        "lock",
        "callback",
        "posthoc",
        "suggest",
        "commands",
        "cli",
        "synthetic",
        "planted",
    ],
}
ORDER = list(STAGES)
STAGE = {module: stage for stage, modules in STAGES.items() for module in modules}
MAX_LINES = 330
"""The style's "under ~300 lines", with room for a docstring's growth."""


def imports(path: Path) -> set[str]:
    """The `tracker` modules a file imports (first component below `tracker`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "tracker":
            names = [f"tracker.{a.name}" for a in node.names]  # from tracker import config
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            names = []
        for name in names:
            parts = name.split(".")
            if parts[0] == "tracker":
                found.add(parts[1] if len(parts) > 1 else "tracker")
    return found


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "tracker")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_module_has_a_stage():
    modules = {module_of(p) for p in (ROOT / "tracker").rglob("*.py")} - {"__init__"}
    assert modules == set(STAGE), modules ^ set(STAGE)


def test_no_stage_imports_a_later_one():
    against = []
    for path in (ROOT / "tracker").rglob("*.py"):
        if path.name == "__init__.py" and path.parent.name == "tracker":
            continue  # the package's front door re-exports every stage
        mine = ORDER.index(STAGE[module_of(path)])
        for other in imports(path) - {module_of(path)}:
            assert other in STAGE, f"{path} imports tracker.{other}, which has no stage"
            if ORDER.index(STAGE[other]) > mine:
                against.append(f"{path.relative_to(ROOT)} imports tracker.{other}")
    assert not against, against


def test_the_app_reads_through_the_reader_only():
    for path in (ROOT / "app").rglob("*.py"):
        assert imports(path) <= {"reader"}, (path, imports(path))


def test_no_module_is_long():
    long = {
        str(p.relative_to(ROOT)): n
        for p in [*(ROOT / "tracker").rglob("*.py"), *(ROOT / "app").rglob("*.py")]
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_viewer_and_the_cli_start_without_lightning():
    # Importing Lightning took most of the viewer's first page load; only the callback and
    # `tracker capture` need it, and `FeatureTracker` still comes from the package.
    code = (
        "import sys, tracker.reader, tracker.cli; print('lightning' in sys.modules); "
        "from tracker import FeatureTracker; print(FeatureTracker.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "tracker.callback"]
