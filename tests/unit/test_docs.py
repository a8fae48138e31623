"""Each setting is described once, in a spec, and docs/settings.md is generated from the specs, so neither can drift.

The specs are meta/settings.yml (gpubox-wide settings) and roles/*/meta/argument_specs.yml; the values are in
group_vars/all/main.yml and roles/*/defaults/main.yml. `make help` lists every target.
"""

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("settings_table", REPO / "scripts/settings-table.py")
settings_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(settings_table)

ROLES = sorted(settings_table.role_specs())
GROUP_VARS = yaml.safe_load((REPO / "group_vars/all/main.yml").read_text())
WIDE = settings_table.gpubox_wide()


def has_jinja(value):
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(has_jinja(item) for item in value)
    if isinstance(value, dict):
        return any(has_jinja(key) or has_jinja(item) for key, item in value.items())
    return False


def plain(value):
    """A value the spec repeats as its default: a scalar, a list of scalars or an empty mapping, without Jinja.

    A larger literal table (python_envs_presets) is described in words instead of copied."""
    if has_jinja(value):
        return False
    if isinstance(value, list):
        return all(not isinstance(item, (list, dict)) for item in value)
    if isinstance(value, dict):
        return not value
    return True


def check_default(where, name, value, option):
    """The spec's default is the value; a worked-out one is said in words ("Default: ...") instead."""
    description = settings_table.text(option)
    if plain(value):
        assert "default" in option, f"{where}: {name} has the plain default {value!r}: give it as the spec's default"
    if "default" in option:
        # The same type too: YAML's false is not 0 (Python says False == 0).
        assert not has_jinja(value) and type(option["default"]) is type(value) and option["default"] == value, (
            f"{where}: {name}'s spec default {option['default']!r} differs from its value {value!r}")
    else:
        assert settings_table.split_default(description)[1], (
            f"{where}: {name}'s default {value!r} is worked out: end its description with 'Default: <in words>.'")


def check_types(where, options, values):
    """Ansible's own validation (the one it runs before a role) accepts the plain values; callers give the required."""
    spec = {name: {key: item for key, item in option.items() if key not in ("description", "required")}
            for name, option in options.items()}
    given = {name: value for name, value in values.items() if name in spec and not has_jinja(value)}
    result = ArgumentSpecValidator(spec).validate(given)
    assert not result.error_messages, f"{where}: {result.error_messages}"


def test_settings_page_matches_the_specs():
    page = (REPO / "docs/settings.md").read_text()
    assert settings_table.page() == page, (
        "docs/settings.md is out of date: run python3 scripts/settings-table.py --write")


@pytest.mark.parametrize("role", ROLES)
def test_every_role_setting_has_its_spec(role):
    defaults = settings_table.role_defaults(role)
    merged = settings_table.role_options(settings_table.role_specs()[role])
    options = {name: option for name, (option, _) in merged.items()}
    where = f"roles/{role}/meta/argument_specs.yml"
    for name, value in defaults.items():
        if name.startswith("__"):
            continue
        assert name in options, f"{where} has no entry for {name} (roles/{role}/defaults/main.yml)"
        assert settings_table.text(options[name]), f"{where}: {name} has no description"
        check_default(where, name, value, options[name])
    check_types(where, options, defaults)


@pytest.mark.parametrize("role", ROLES)
def test_no_role_spec_entry_without_its_variable(role):
    """A spec entry is a variable of its defaults, an input its callers give, or a gpubox-wide setting it reads."""
    defaults = settings_table.role_defaults(role)
    for entry, argument_spec in settings_table.role_specs()[role].items():
        for name, option in (argument_spec.get("options") or {}).items():
            where = f"roles/{role}/meta/argument_specs.yml ({entry})"
            assert settings_table.text(option), f"{where}: {name} has no description"
            given = option.get("required") or settings_table.text(option).startswith("Internal: given by")
            read = name in GROUP_VARS and name in WIDE
            assert name in defaults or given or read, (
                f"{where}: {name} is neither in defaults/main.yml, nor required, nor an input 'Internal: given by' a "
                "caller, nor a gpubox-wide setting: remove it, or define it")
            if name in defaults and "required" in option:
                assert not option["required"], f"{where}: {name} has a value in defaults/main.yml: not required"


USER_WORD = re.compile(r"^\{\{\s*\(?\s*([a-z_][a-z0-9_]*)\s*\|\s*default\(")
LITERAL = re.compile(r"'[^']*'|-?[0-9]+(\.[0-9]+)?|true|false|\[\]")


def user_word(value):
    """(WORD, its default as written) of '{{ WORD | default(VALUE) }}', also with a filter after it, else None."""
    value = value.strip()
    match = USER_WORD.match(value)
    if not match:
        return None
    depth, start = 1, match.end()
    for i in range(start, len(value)):
        depth += {"(": 1, ")": -1}.get(value[i], 0)
        if depth == 0:
            return match.group(1), value[start:i].strip()
    return None


def test_every_gpubox_wide_setting_has_its_spec():
    for variable, value in GROUP_VARS.items():
        if variable.startswith("gpubox_"):
            word = user_word(value)
            assert word and variable == f"gpubox_{word[0]}", (
                f"group_vars/all/main.yml: write {variable} as \"{{{{ WORD | default(VALUE) }}}}\", WORD what users type")
            name, written = word
            value = yaml.safe_load(written) if LITERAL.fullmatch(written) else value
        else:
            name = variable
        assert name in WIDE, f"meta/settings.yml has no entry for {name} ({variable} in group_vars/all/main.yml)"
        assert settings_table.text(WIDE[name]), f"meta/settings.yml: {name} has no description"
        check_default("meta/settings.yml", name, value, WIDE[name])
    defaults = {name: option["default"] for name, option in WIDE.items() if "default" in option}
    check_types("meta/settings.yml", WIDE, defaults)


def test_no_gpubox_wide_spec_entry_without_its_variable():
    defined = {variable.removeprefix("gpubox_") for variable in GROUP_VARS}
    for name in WIDE:
        assert name in defined, f"meta/settings.yml: {name} has no gpubox_{name} (or {name}) in group_vars/all/main.yml"


def test_internal_settings_are_marked_and_listed_last():
    page = (REPO / "docs/settings.md").read_text()
    for section in re.split(r"^##+ ", page, flags=re.M)[1:]:
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        marked = [row.split(" | ")[3].startswith(settings_table.INTERNAL) for row in rows]
        assert marked == sorted(marked), f"internal settings come after the others: {section.splitlines()[0]}"


def test_make_help_lists_every_target_once():
    database = subprocess.run(["make", "-pnq", "-C", str(REPO), "help"], capture_output=True, text=True).stdout
    (phony,) = re.findall(r"^\.PHONY: (.*)$", database, re.M)
    shown = subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, check=True).stdout
    listed = [line.split()[1] for line in shown.splitlines()]
    assert sorted(listed) == sorted(phony.split()), "each .PHONY target needs one `## what it does` line for make help"
