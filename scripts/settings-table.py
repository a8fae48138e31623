#!/usr/bin/env python3
"""Print the README's settings table from the files that define the settings.

Sources: group_vars/all/main.yml (gpubox-wide settings) and roles/*/defaults/main.yml (each
role's interface). A setting's description is the comment block right above it. A gpubox-wide
setting is written gpubox_WORD: "{{ WORD | default(VALUE) }}": the table shows WORD, what users
type with -e, and VALUE when it is a plain value.
`python3 scripts/settings-table.py --write` rewrites the README's table; tests/unit/test_docs.py fails when the
two differ.
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def settings(path):
    """(name, default, description) for each top-level key of a YAML file, in order."""
    comments, found = [], []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            comments = []
            continue
        if line.startswith("#"):
            text = line.lstrip("# ").strip()
            if text.startswith("---"):
                comments = []
            else:
                comments.append(text)
            continue
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):\s*(.*)$", line)
        if match and not match.group(1).startswith("__"):
            value = match.group(2).strip() or _block(lines, i)
            found.append((match.group(1), value, " ".join(comments)))
        if not line.startswith(" "):
            comments = []
    return found


def _block(lines, i):
    """A short rendering of a value written as an indented block."""
    body = []
    for line in lines[i + 1:]:
        if line and not line.startswith(" "):
            break
        if line.strip() and not line.strip().startswith("#"):
            body.append(line.strip())
    return " ".join(body) if len(" ".join(body)) <= 60 else "(see the file)"


WORD = re.compile(r"^[\"']?\{\{\s*\(?\s*([a-z_][a-z0-9_]*)\s*\|\s*default\(")


def user_word(value):
    """(WORD, VALUE) of '{{ WORD | default(VALUE) }}' (VALUE as written when it is a literal), else None."""
    match = WORD.match(value)
    if not match:
        return None
    depth, start = 1, match.end()
    for i in range(start, len(value)):
        depth += {"(": 1, ")": -1}.get(value[i], 0)
        if depth == 0:
            default = value[start:i].strip()
            break
    else:
        return None
    literal = re.fullmatch(r"'[^']*'|-?[0-9]+|true|false|\[\]", default)
    return match.group(1), (default.strip("'") or '""') if literal else "(see what it does)"


def table():
    sources = [REPO / "group_vars/all/main.yml"] + sorted(REPO.glob("roles/*/defaults/main.yml"))
    rows = ["| setting | default | what it does | defined in |", "| --- | --- | --- | --- |"]
    for path in sources:
        where = str(path.relative_to(REPO))
        for name, default, description in settings(path):
            word = user_word(default)
            if word and name == f"gpubox_{word[0]}":
                name, default = word
            default = default.replace("|", "\\|")
            rows.append(f"| `{name}` | `{default}` | {description.replace('|', '/')} | {where} |")
    return "\n".join(rows)


def readme_with_table(readme):
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    path = REPO / "README.md"
    if sys.argv[1:] == ["--write"]:
        path.write_text(readme_with_table(path.read_text()))
    else:
        print(table())
