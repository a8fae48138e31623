"""inventory/aws_ec2.yml lists only gpubox instances, grouped by box name."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, UBUNTU_AMI


def test_inventory_lists_only_gpubox_boxes_grouped_by_name(gpubox, aws):
    assert gpubox.launch(name="alpha").rc == 0
    assert gpubox.launch(name="beta", type="g4dn.xlarge").rc == 0
    aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "not-mine"}]}])

    env = {k: v for k, v in gpubox.env.items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    listing = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "--list"],
                             cwd=REPO, env=env, capture_output=True, text=True, check=True)
    inventory = json.loads(listing.stdout)
    assert inventory["gpubox_alpha"]["hosts"] == ["gpubox-alpha"]
    assert inventory["gpubox_beta"]["hosts"] == ["gpubox-beta"]
    assert sorted(inventory["gpubox"]["hosts"]) == ["gpubox-alpha", "gpubox-beta"]
    hostvars = inventory["_meta"]["hostvars"]
    assert "not-mine" not in hostvars
    assert "localhost" in inventory["ungrouped"]["hosts"]

    alpha = _login(gpubox, "gpubox-alpha")
    known_hosts = f"{gpubox.home}/.ssh/gpubox.d/alpha.known_hosts"
    assert alpha == [aws.instance("alpha")["PublicIpAddress"], "22", "ubuntu",
                     f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known_hosts}"]


def test_ssh_overrides_reach_boxes_found_by_the_inventory(gpubox, aws):
    assert gpubox.launch(name="alpha").rc == 0
    alpha = _login(gpubox, "gpubox-alpha", ssh_host="10.8.0.5", ssh_port=2222, ssh_user="jo")
    assert alpha[:3] == ["10.8.0.5", "2222", "jo"]


def _login(gpubox, host, **settings):
    """How Ansible would log in to an inventory host, with gpubox's group_vars as the playbooks see them."""
    env = {k: v for k, v in gpubox.env.items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
    fields = "[ansible_host, ansible_port | string, ansible_user, ansible_ssh_common_args]"
    cmd = [str(Path(sys.executable).parent / "ansible"), host, "--playbook-dir", "playbooks",
           "-m", "ansible.builtin.debug", "-a", f"msg={{{{ {fields} }}}}"]
    if settings:
        cmd += ["-e", json.dumps(settings)]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("=>") + 2:])["msg"]
