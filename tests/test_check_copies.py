"""tools/check_copies.py: code marked `# Copied from` (shared by the CNN and S4 files, which cannot import
each other) must stay equal to its original."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "tools" / "check_copies.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECKER), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_project_copies_match_their_originals():
    completed = run()
    assert completed.returncode == 0, completed.stderr
    checked = int(completed.stdout.split()[0])
    assert checked >= 2  # modeling_s4's lengths_to_mask and clip_lengths, copied from modeling_cnn


def write_tree(root: Path, copy_body: str, marker: str = "# Copied from modeling.a.helper") -> Path:
    (root / "modeling").mkdir(parents=True)
    (root / "modeling" / "a.py").write_text(
        textwrap.dedent(
            '''
            class Outer:
                def helper(x):
                    """Doubled."""
                    return 2 * x


            def helper(x):
                """Doubled."""
                return 2 * x
            '''
        )
    )
    copy = root / "modeling" / "b.py"
    copy.write_text(f"import math\n\n\n{marker}\ndef helper(x):\n{copy_body}\n\n\nVALUE = 1\n")
    return copy


def test_a_drifted_copy_fails_and_fix_restores_it(tmp_path):
    copy = write_tree(tmp_path, '    """Doubled."""\n    return x + x')
    completed = run("--root", str(tmp_path))
    assert completed.returncode == 1
    assert "modeling/b.py:4: differs from modeling.a.helper" in completed.stderr

    fixed = run("--root", str(tmp_path), "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert copy.read_text() == (
        'import math\n\n\n# Copied from modeling.a.helper\ndef helper(x):\n    """Doubled."""\n'
        "    return 2 * x\n\n\nVALUE = 1\n"
    )
    assert run("--root", str(tmp_path)).returncode == 0


def test_equal_copies_methods_and_replacements_pass(tmp_path):
    write_tree(
        tmp_path, '    """Doubled."""\n    return 2 * x', marker="# Copied from modeling.a.Outer.helper"
    )
    assert run("--root", str(tmp_path)).returncode == 0
    (tmp_path / "modeling" / "c.py").write_text(
        "# Copied from modeling.a.helper with Doubled->Twice\n"
        'def helper(x):\n    """Twice."""\n    return 2 * x\n'
    )
    completed = run("--root", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("2 marked copies")


def test_a_marker_pointing_nowhere_fails(tmp_path):
    write_tree(tmp_path, '    """Doubled."""\n    return 2 * x', marker="# Copied from modeling.a.not_there")
    completed = run("--root", str(tmp_path))
    assert completed.returncode == 1
    assert "modeling.a.not_there': no such function or class" in completed.stderr
