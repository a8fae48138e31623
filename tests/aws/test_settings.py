"""A value set in group_vars/ takes effect in every entry playbook.

Ansible loads a top-level group_vars/ only for plays in top-level playbooks, and gpubox's plays
live in playbooks/. This runs each command from a copy of the project whose group_vars/ alone
names another region, and checks that every command acted there.
"""

import json
import re
import shutil

from support.gpubox import Gpubox, REPO, free_port


def project_with(tmp_path, setting, value):
    """A copy of the project whose group_vars/all/main.yml sets one value differently (gpubox_SETTING)."""
    copy = tmp_path / "project"
    shutil.copytree(REPO, copy, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", ".cache", "__pycache__", "tests"))
    settings = copy / "group_vars/all/main.yml"
    # The setting's line, and the indented lines that continue it.
    text, count = re.subn(rf"(?m)^gpubox_{setting}: .*(\n  .*)*$", f"gpubox_{setting}: {value}", settings.read_text())
    assert count == 1
    settings.write_text(text)
    return copy


def test_group_vars_reach_every_entry_playbook(moto_url, aws, tmp_path):
    copy = project_with(tmp_path, "aws_region", "eu-west-1")

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


def test_group_vars_reach_configure(moto_url, tmp_path):
    # configure.yml waits instance_wait_timeout seconds for SSH: 600 by default, 3 in this copy.
    copy = project_with(tmp_path, "instance_wait_timeout", "3")
    home = tmp_path / "home"
    home.mkdir()
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"unreachable-box ansible_host=127.0.0.1 ansible_port={free_port()}\n")  # nothing listens there
    result = Gpubox(moto_url, home, repo=copy).run(
        "configure.yml", env={"ANSIBLE_INVENTORY": str(inventory), "ANSIBLE_HOST_KEY_CHECKING": "false"})
    assert result.rc != 0
    failed = [t["hosts"]["unreachable-box"] for p in result.output["plays"] for t in p["tasks"]
              if t["hosts"].get("unreachable-box", {}).get("failed")]
    assert failed, result.text
    assert "could not be reached over SSH within 3 s" in failed[-1]["msg"]


def test_several_hosts_are_refused_unless_asked_and_the_ssh_overrides_always(moto_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("box-a ansible_host=127.0.0.1\nbox-b ansible_host=127.0.0.1\n")
    env = {"ANSIBLE_INVENTORY": str(inventory)}
    several = Gpubox(moto_url, home).run("configure.yml", env=env)
    assert several.rc != 0
    assert several.said("This run would act on 2 hosts (box-a, box-b)", "--limit HOST", "-e all_boxes=true"), several.messages

    result = Gpubox(moto_url, home).run("configure.yml", env=env, all_boxes=True, ssh_host="127.0.0.1",
                                        ssh_port=free_port())
    assert result.rc != 0
    assert result.said("ssh_host, ssh_port and ssh_user name one machine, but this run targets 2", "box-a, box-b",
                       "Pick one box with -e name=NAME")


def test_a_mistyped_auto_stop_setting_is_refused_not_taken_for_off(moto_url, tmp_path):
    """autostop_minutes: 90m in an inventory of one's own once became 0 (auto-stop off) on its way to the role: it
    must stop the run, naming the setting, before anything changes (only the auto-stop part runs, on this machine,
    and fails first)."""
    home = tmp_path / "home"
    home.mkdir()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text('all:\n  hosts:\n    own-machine:\n      ansible_connection: local\n'
                         '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
                         '      autostop_minutes: 90m\n')
    env = {"ANSIBLE_INVENTORY": str(inventory), "ANSIBLE_RUN_TAGS": "autostop"}
    result = Gpubox(moto_url, home).run("configure.yml", env=env, gpu_required=False)
    assert result.rc != 0
    outcomes = [t["hosts"]["own-machine"] for p in result.output["plays"] for t in p["tasks"]
                if "own-machine" in t["hosts"]]
    failed = [o for o in outcomes if o.get("failed")]
    assert failed and "autostop_minutes" in json.dumps(failed[-1]), result.text
    assert not any(o.get("changed") for o in outcomes)
