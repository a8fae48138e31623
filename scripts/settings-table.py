#!/usr/bin/env python3
"""Write docs/settings.md from the specs, the one place each setting is described.

Sources: meta/settings.yml (the gpubox-wide settings, which users give as -e WORD=VALUE) and each role's
meta/argument_specs.yml (its inputs; ansible-doc -t role -r roles ROLE shows the same text). A description that begins
"Internal:" or "Test hook:" marks an input that gpubox's own plays, roles or tests pass; those are listed after the
others. A sentence "Default: ..." at the end of a description is a default worked out when the play runs; the page
shows it in the default column.
`python3 scripts/settings-table.py --write` rewrites docs/settings.md (without --write it prints the page);
tests/unit/test_docs.py fails when the page and the specs differ.
"""

import re
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GLOBAL_SPEC = REPO / "meta/settings.yml"
PAGE = REPO / "docs/settings.md"
INTERNAL = ("Internal:", "Test hook:")


def load(path):
    return yaml.safe_load(path.read_text())


def gpubox_wide():
    """The gpubox-wide settings: name to option spec, in the file's order."""
    return load(GLOBAL_SPEC)["options"]


def role_specs():
    """Each role's argument specs, by role name: {role: {entry point: spec}}."""
    paths = sorted(REPO.glob("roles/*/meta/argument_specs.yml"))
    return {path.parts[-3]: load(path)["argument_specs"] for path in paths}


def role_defaults(role):
    """The variables a role's defaults/main.yml defines, name to value."""
    path = REPO / "roles" / role / "defaults/main.yml"
    return (load(path) if path.exists() else None) or {}


def role_options(entry_points):
    """A role's inputs: those of its main entry point, or the union of its entry points' when it has no main one.

    Returns name to (option spec, [(entry point, its description)] for each entry point that takes it; [] for main)."""
    if "main" in entry_points:
        return {name: (option, []) for name, option in (entry_points["main"].get("options") or {}).items()}
    merged = {}
    for entry, spec in entry_points.items():
        for name, option in (spec.get("options") or {}).items():
            merged.setdefault(name, (option, []))[1].append((entry, text(option)))
    return merged


def text(option):
    """An option's description as one paragraph."""
    description = option.get("description", "")
    if isinstance(description, list):
        description = " ".join(description)
    return " ".join(description.split())


def is_internal(option):
    return text(option).startswith(INTERNAL)


DEFAULT_SENTENCE = re.compile(r"(?:^|(?<=[.!?]) )Default: (.*)$")


def split_default(description):
    """(description without its closing 'Default: ...' sentence, the words of that default or None)."""
    match = DEFAULT_SENTENCE.search(description)
    if not match:
        return description, None
    return description[:match.start()].rstrip(), match.group(1).rstrip(".")


def value(data):
    """A plain default as a user would write it."""
    if data is True or data is False:
        return str(data).lower()
    if isinstance(data, str):
        return data if data else '""'
    if isinstance(data, list):
        return "[" + ", ".join(value(item) for item in data) + "]"
    if isinstance(data, dict):
        return "{" + ", ".join(f"{key}: {value(item)}" for key, item in data.items()) + "}"
    return str(data)


def type_of(option):
    kind = option.get("type", "str")
    if kind == "list" and option.get("elements"):
        kind = f"list of {option['elements']}"
    if option.get("choices"):
        kind += ": " + ", ".join(f"`{value(choice)}`" for choice in option["choices"])
    return kind


def cell(words):
    return words.replace("|", "\\|")


def row(name, option, entries=()):
    description, default_words = split_default(text(option))
    if "default" in option:
        default = f"`{cell(value(option['default']))}`"
    elif option.get("required"):
        default = "required"
    elif default_words:
        default = f"*{cell(default_words)}*"
    else:
        default = "none"
    if entries:
        # The first entry point's description, then those of the entry points that say more.
        description += f" Entry points: {', '.join(entry for entry, _ in entries)}."
        for entry, words in entries:
            if words != entries[0][1]:
                description += f" {entry}: {words.removeprefix(INTERNAL[0]).strip()}"
    return f"| `{name}` | {type_of(option)} | {default} | {cell(description)} |"


HEADER = ["| setting | type | default | what it does |", "| --- | --- | --- | --- |"]


def tables(options, shared=()):
    """User-facing settings, then the internal ones under their own heading; names in shared are left out."""
    lines = []
    rows = {False: [], True: []}
    for name, (option, entries) in options.items():
        if name not in shared:
            rows[is_internal(option)].append(row(name, option, entries))
    if rows[False]:
        lines += HEADER + rows[False] + [""]
    if rows[True]:
        lines += ["Internal (gpubox's plays, roles or tests pass them; set one only to override what they pass):", ""]
        lines += HEADER + rows[True] + [""]
    return lines


def make_settings():
    """The settings the Makefile passes from its command line (make launch type=g6.xlarge)."""
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(r"^SETTINGS :=(.*)$", makefile, re.M)
    return match.group(1).split() if match else []


def page():
    wide = gpubox_wide()
    specs = role_specs()
    lines = [
        "# Settings",
        "",
        "<!-- Generated by scripts/settings-table.py from meta/settings.yml and roles/*/meta/argument_specs.yml:",
        "     edit those, then run python3 scripts/settings-table.py --write. -->",
        "",
        "Every setting has a default. Set one with `-e setting=value` on any command"
        " (`ansible-playbook launch.yml -e type=g6.xlarge -e autostop_warn_minutes=5`), or in your inventory for a"
        " role's setting. `make` passes these from its command line (`make launch type=g6.xlarge`): "
        + ", ".join(f"`{name}`" for name in make_settings()) + ".",
        "",
        "Each setting is described once, in a spec: `meta/settings.yml` for the gpubox-wide settings, each role's"
        " `meta/argument_specs.yml` for the role's (`ansible-doc -t role -r roles ROLE` prints the same text, and"
        " Ansible checks a role's inputs against it before the role's first task). This page is generated from them,"
        " and `tests/unit/test_docs.py` fails when it drifts, or when a spec and the defaults it describes disagree.",
        "",
        "A default in *italics* is worked out when the play runs. Internal settings, listed after the others, are the"
        " inputs that gpubox's own plays and roles pass from the box record or from another role, or that tests use.",
        "",
        "- [gpubox-wide settings](#gpubox-wide-settings)",
        "- [Role settings](#role-settings): " + ", ".join(f"[{role}](#{role})" for role in specs),
        "",
        "## gpubox-wide settings",
        "",
        "`group_vars/all/main.yml` maps each one to a `gpubox_*` variable"
        " (`gpubox_type: \"{{ type | default('') }}\"`), which the plays hand to the roles as their own inputs.",
        "",
    ]
    lines += tables({name: (option, []) for name, option in wide.items()})
    lines += ["## Role settings", ""]
    for role, entry_points in specs.items():
        options = role_options(entry_points)
        # A gpubox-wide setting the role reads as it is (gpu_required), not one of its own of the same name.
        shared = [name for name in options if name in wide and name not in role_defaults(role)]
        summary = entry_points.get("main", {}).get("short_description")
        lines += [f"### {role}", ""]
        if summary:
            lines += [summary, ""]
        else:
            entries = ", ".join(f"`{entry}`" for entry in entry_points)
            lines += [f"Entry points (`tasks_from`): {entries}; each one's inputs:"
                      f" `ansible-doc -t role -r roles {role}`.", ""]
        if shared:
            lines += ["Also reads the gpubox-wide " + ", ".join(f"`{name}`" for name in shared) + ".", ""]
        lines += tables(options, shared)
    return "\n".join(wrap(line) for line in lines).rstrip("\n") + "\n"


def wrap(line):
    """Prose lines wrapped at 120 characters; table rows stay whole."""
    if line.startswith("|"):
        return line
    return textwrap.fill(line, width=120, break_long_words=False, break_on_hyphens=False,
                         subsequent_indent="  " if line.startswith("- ") else "")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(page())
    elif sys.argv[1:]:
        sys.exit("usage: python3 scripts/settings-table.py [--write]")
    else:
        sys.stdout.write(page())
