"""A value set in group_vars/ takes effect in every entry playbook.

Ansible loads a top-level group_vars/ only for plays in top-level playbooks, and gpubox's plays
live in playbooks/. This runs each command from a copy of the project whose group_vars/ alone
names another region, and checks that every command acted there.
"""

import re
import shutil

from conftest import Aws, Gpubox, REPO


def test_group_vars_reach_every_entry_playbook(moto_url, aws, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(REPO, copy, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", ".cache", "__pycache__", "tests"))
    settings = copy / "group_vars/all/main.yml"
    text, count = re.subn(r"(?m)^aws_region: .*$", "aws_region: eu-west-1", settings.read_text())
    assert count == 1
    settings.write_text(text)

    home = tmp_path / "home"
    home.mkdir()
    gpubox = Gpubox(moto_url, home, repo=copy)  # its environment still says AWS_REGION=us-east-1
    europe = aws.in_region("eu-west-1")

    assert gpubox.launch().rc == 0
    assert europe.instance()["Placement"]["AvailabilityZone"].startswith("eu-west-1")
    assert aws.instances() == []

    status = gpubox.run("status.yml")
    assert status.rc == 0 and status.said("gpubox", "g5.xlarge", "running"), status.text

    assert gpubox.run("stop.yml").rc == 0
    assert europe.instance()["State"]["Name"] == "stopped"

    assert gpubox.run("start.yml").rc == 0
    assert europe.instance()["State"]["Name"] == "running"

    assert gpubox.run("teardown.yml", confirm=True).rc == 0
    assert europe.instances() == []
