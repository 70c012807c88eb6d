"""Writes the table of every value of the chart into its README.md, from values.yaml:
each key's description is the comment block right above it (and a comment on its line),
its default the value values.yaml gives. A test fails while the README is stale.

    python deploy/helm/values_readme.py          rewrite the chart's README.md
    python deploy/helm/values_readme.py --check  exit 1 if it is stale
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "oauth2-token-operator"
BEGIN = "<!-- values: generated from values.yaml by deploy/helm/values_readme.py -->"
END = "<!-- end of values -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class Value:
    """One key of values.yaml: its dotted path, default, and description."""

    path: str
    default: Any
    description: str
    leaf: bool


def _lookup(values: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    node: Any = values
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _inline_comment(rest: str) -> str:
    """The comment after a key's value on its line (` # ...`), outside quotes."""
    quote = ""
    for i, char in enumerate(rest):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or rest[i - 1] in " \t"):
            return rest[i + 1 :].strip()
    return ""


def parse(text: str) -> list[Value]:
    """Every key of values.yaml that is a value or a map of values (keys inside list
    items are part of their list's default), in file order."""
    values = yaml.safe_load(text)
    found: list[Value] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        match = KEY.match(line)
        if not stripped or not match:
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [key for _, key in stack] + [match["key"]]
        stack.append((indent, match["key"]))
        exists, default = _lookup(values, path)
        if exists:
            description = " ".join([*comment, _inline_comment(match["rest"])]).strip()
            leaf = not isinstance(default, dict) or not default
            found.append(Value(".".join(path), default, description, leaf))
        comment = []
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(values: list[Value]) -> str:
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for value in values:
        if not value.leaf and not value.description:
            continue  # a map without a comment of its own: its values have theirs
        default = f"`{_cell(json.dumps(value.default))}`" if value.leaf else ""
        rows.append(f"| `{value.path}` | {default} | {_cell(value.description)} |")
    return "\n".join(rows)


def render(readme: str, values_yaml: str) -> str:
    """The README with the table between its markers replaced."""
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table(parse(values_yaml))}\n{END}{tail}"


def main(argv: list[str]) -> int:
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    wanted = render(readme, (CHART / "values.yaml").read_text())
    if "--check" in argv:
        if readme != wanted:
            print(f"{readme_path} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
