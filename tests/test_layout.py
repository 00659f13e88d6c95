"""The core runs without the screen: it must never import Textual."""

import subprocess
import sys

def core_modules() -> list[str]:
    """Every module of the package but the screen's (gilviz.tui) and the workloads (run as scripts)."""
    import pkgutil

    import gilviz

    return sorted(m.name for m in pkgutil.walk_packages(gilviz.__path__, "gilviz.")
                  if not m.name.startswith(("gilviz.tui.", "gilviz.workloads")) and m.name != "gilviz.__main__")


def test_core_imports_no_textual():
    core = core_modules()
    assert {"gilviz.sampler", "gilviz.stream", "gilviz.timeline.store", "gilviz.sources"} <= set(core)
    code = f"import sys\nfor m in {core!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_report_and_record_run_without_textual(tmp_path):
    """`gilviz record` and `gilviz report` never load the screen's code."""
    code = ("import sys\nfrom gilviz.cli import main\npath = sys.argv[1]\n"
            "main(['record', '-o', path, '--duration', '0.3', '-c', 'import time; time.sleep(1)'])\n"
            "main(['report', path])\n"
            "assert not any(m.startswith('textual') for m in sys.modules), 'textual was imported'\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.gilviz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ticks" in result.stdout


def test_the_command_line_modules_import_in_one_direction():
    """cli/__init__ dispatches to commands, live, export and serve; they use options (export and
    serve, live's view options too); none imports back."""
    import ast
    from pathlib import Path

    import gilviz.cli as cli

    folder = Path(cli.__file__).parent
    imports = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        imports[path.stem] = {node.module for node in ast.walk(tree)
                              if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
    assert imports["options"] == set()
    assert imports["commands"] <= {"options"} and imports["live"] <= {"options"}
    assert imports["export"] <= {"options", "live"} and imports["serve"] <= {"options", "live"}
    assert imports["__init__"] <= {"commands", "options", "live", "export", "serve"}
