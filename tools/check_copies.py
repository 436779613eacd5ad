"""Check that code marked as a deliberate copy still equals its original (transformers' `# Copied from`).

The CNN and S4 model files cannot import each other: each folder is copied alone next to a saved model and
loaded with trust_remote_code. Code both need is therefore copied, and the copy is marked on the line right
above its `def` / `class` (above its decorators, if any):

    # Copied from modeling.cnn.modeling_cnn.lengths_to_mask
    def lengths_to_mask(...):

`# Copied from <module>.<name> with Old->New` applies the replacement to the original before comparing.

    python tools/check_copies.py          # exit 1 and name each copy that drifted
    python tools/check_copies.py --fix    # overwrite drifted copies with their original
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(
    r"^(?P<indent>\s*)# Copied from (?P<target>[\w.]+)(?: with (?P<old>\S+)->(?P<new>\S+))?\s*$"
)
SEARCHED = ("modeling", "loaders", "tools")


@dataclass
class Copy:
    path: Path
    line: int  # 1-based line of the marker
    target: str
    replacement: tuple[str, str] | None
    start: int  # 0-based first and last+1 line of the copied definition
    end: int


def _definition_span(tree: ast.Module, qualname: list[str]) -> tuple[int, int] | None:
    """0-based [start, end) lines of the definition `qualname` (decorators included), or None."""
    body: list[ast.stmt] = tree.body
    node = None
    for part in qualname:
        node = next(
            (
                n
                for n in body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part
            ),
            None,
        )
        if node is None:
            return None
        body = node.body
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return first - 1, node.end_lineno


def _resolve(root: Path, target: str) -> tuple[Path, list[str]] | None:
    """`a.b.module.Name.method` -> (root/a/b/module.py, ["Name", "method"])."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        path = root.joinpath(*parts[:split]).with_suffix(".py")
        if path.is_file():
            return path, parts[split:]
    return None


def find_copies(root: Path) -> tuple[list[Copy], list[str]]:
    copies, errors = [], []
    for folder in SEARCHED:
        for path in sorted((root / folder).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            # Real comments only (tokenize), not the example in a docstring such as this file's.
            comment_lines = {
                token.start[0] - 1
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT
            }
            tree = None
            for index in sorted(comment_lines):
                match = MARKER.match(lines[index])
                if not match:
                    continue
                tree = tree or ast.parse("\n".join(lines))
                span = next(
                    (
                        (first - 1, node.end_lineno)
                        for node in ast.walk(tree)
                        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                        for first in [min([node.lineno, *(d.lineno for d in node.decorator_list)])]
                        if first - 1 == index + 1
                    ),
                    None,
                )
                where = f"{path.relative_to(root)}:{index + 1}"
                if span is None:
                    errors.append(f"{where}: '# Copied from' must sit on the line right above a def or class")
                    continue
                replacement = (match["old"], match["new"]) if match["old"] else None
                copies.append(Copy(path, index + 1, match["target"], replacement, *span))
    return copies, errors


def original_source(root: Path, copy: Copy) -> str | None:
    resolved = _resolve(root, copy.target)
    if resolved is None:
        return None
    path, qualname = resolved
    lines = path.read_text().splitlines()
    span = _definition_span(ast.parse("\n".join(lines)), qualname)
    if span is None:
        return None
    text = textwrap.dedent("\n".join(lines[span[0] : span[1]]))
    if copy.replacement:
        text = text.replace(*copy.replacement)
    return text


def check(root: Path, fix: bool = False) -> tuple[int, list[str]]:
    """(number of copies checked, problems). With `fix`, drifted copies are overwritten by the original."""
    copies, problems = find_copies(root)
    for copy in sorted(copies, key=lambda c: (str(c.path), -c.start)):  # bottom-up: fixes keep line numbers
        where = f"{copy.path.relative_to(root)}:{copy.line}"
        expected = original_source(root, copy)
        if expected is None:
            problems.append(f"{where}: '# Copied from {copy.target}': no such function or class")
            continue
        lines = copy.path.read_text().splitlines(keepends=True)
        indent = re.match(r"\s*", lines[copy.start]).group()
        actual = textwrap.dedent("".join(lines[copy.start : copy.end])).rstrip("\n")
        if actual == expected:
            continue
        if fix:
            fixed = textwrap.indent(expected, indent) + "\n"
            lines[copy.start : copy.end] = [fixed]
            copy.path.write_text("".join(lines))
            print(f"{where}: overwritten with {copy.target}")
        else:
            problems.append(
                f"{where}: differs from {copy.target}; make them equal again (python tools/check_copies.py "
                "--fix copies the original) or remove the marker if the copy is meant to differ"
            )
    return len(copies), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--fix", action="store_true", help="overwrite drifted copies with their original")
    args = parser.parse_args(argv)
    checked, problems = check(args.root, fix=args.fix)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{checked} marked copies match their originals")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
