"""The README's settings table is generated from the defaults, so it cannot drift; `make help` lists every target."""

import importlib.util
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("settings_table", REPO / "scripts/settings-table.py")
settings_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(settings_table)


def test_readme_settings_table_matches_the_defaults():
    readme = (REPO / "README.md").read_text()
    assert settings_table.readme_with_table(readme) == readme, (
        "README.md's settings table is out of date: run python3 scripts/settings-table.py --write")


def test_every_setting_is_documented():
    for path in [REPO / "group_vars/all/main.yml", *REPO.glob("roles/*/defaults/main.yml")]:
        for name, _, description in settings_table.settings(path):
            assert description, f"{name} in {path.relative_to(REPO)} has no comment saying what it does"


def test_make_help_lists_every_target_once():
    database = subprocess.run(["make", "-pnq", "-C", str(REPO), "help"], capture_output=True, text=True).stdout
    (phony,) = re.findall(r"^\.PHONY: (.*)$", database, re.M)
    shown = subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, check=True).stdout
    listed = [line.split()[1] for line in shown.splitlines()]
    assert sorted(listed) == sorted(phony.split()), "each .PHONY target needs one `## what it does` line for make help"
