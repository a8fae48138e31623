"""inventory/aws_ec2.yml, for ad-hoc commands: every running gpubox box, with the same box record as the playbooks."""

import json
import subprocess
import sys
from pathlib import Path

from support.gpubox import REPO, UBUNTU_AMI

INVENTORY = ["-i", "inventory/aws_ec2.yml"]


def test_inventory_lists_only_gpubox_boxes_with_their_record(gpubox, aws):
    assert gpubox.launch(name="alpha").rc == 0
    assert gpubox.launch(name="beta", type="g4dn.xlarge").rc == 0
    aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [
                              {"Key": "Name", "Value": "gpubox-mine"}, {"Key": "gpubox:name", "Value": "mine"}]}])

    env = {k: v for k, v in gpubox.env.items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    listing = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), *INVENTORY, "--list"],
                             cwd=REPO, env=env, capture_output=True, text=True, check=True)
    inventory = _plain(json.loads(listing.stdout))
    assert sorted(inventory["gpubox"]["hosts"]) == ["gpubox-alpha", "gpubox-beta"]
    hostvars = inventory["_meta"]["hostvars"]
    assert "gpubox-mine" not in hostvars
    alpha = aws.instance("alpha")
    record = hostvars["gpubox-alpha"]["gpubox_box"]
    data_volume = [m["Ebs"]["VolumeId"] for m in alpha["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf"]
    owner = aws.tags(alpha)["gpubox:owner"]
    assert (record["name"], record["instance_id"], record["address"], record["ssh_user"], record["owner"],
            record["volume_id"], record["instance_type"]) == \
        ("alpha", alpha["InstanceId"], alpha["PublicIpAddress"], "ubuntu", owner, data_volume[0], "g5.xlarge")

    known_hosts = f"{gpubox.home}/.ssh/gpubox.d/alpha.known_hosts"
    assert _login(gpubox, "gpubox-alpha") == [
        alpha["PublicIpAddress"], "22", "ubuntu",
        f"-o HostKeyAlias=gpubox-alpha.{alpha['InstanceId']} -o StrictHostKeyChecking=accept-new "
        f"-o UserKnownHostsFile={known_hosts}"]


def test_a_tag_value_is_never_run_as_a_template_or_an_ssh_option(gpubox, aws, tmp_path):
    # Anyone who may launch a tagged instance in the account chooses its gpubox:name.
    marker = tmp_path / "ran"
    for name in [f"' ~ lookup('ansible.builtin.pipe', 'touch {marker}') ~ 'x", f'x -oProxyCommand="touch {marker}"']:
        aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                              TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                  {"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": name}]}])
    env = {k: v for k, v in gpubox.env.items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    listing = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), *INVENTORY, "--list"],
                             cwd=REPO, env=env, capture_output=True, text=True, check=True)
    inventory = _plain(json.loads(listing.stdout))
    assert inventory.get("gpubox", {}).get("hosts", []) == []  # no login settings are built from such a name
    subprocess.run([str(Path(sys.executable).parent / "ansible"), "gpubox", *INVENTORY, "--playbook-dir", "playbooks",
                    "-m", "ansible.builtin.ping"], cwd=REPO, env=env, capture_output=True, text=True)
    assert not marker.exists()


def test_an_ssh_user_tag_that_is_not_a_login_name_is_not_the_login(gpubox, aws):
    # EC2 allows newlines in tag values: such a user would add a Host block with a ProxyCommand to ~/.ssh/config.
    hostile = "ubuntu\nHost *\n    ProxyCommand touch /tmp/gpubox-pwned"
    aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [
                              {"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "evil"},
                              {"Key": "gpubox:owner", "Value": "AIDAMALLORY"}, {"Key": "gpubox:ssh-user", "Value": hostile}]}])
    env = {k: v for k, v in gpubox.env.items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    listing = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), *INVENTORY, "--list"],
                             cwd=REPO, env=env, capture_output=True, text=True, check=True)
    hostvars = _plain(json.loads(listing.stdout))["_meta"]["hostvars"]["gpubox-evil"]
    assert hostvars["gpubox_box"]["ssh_user"] == "ubuntu"


def test_ssh_overrides_reach_boxes_found_by_the_inventory(gpubox, aws):
    assert gpubox.launch(name="alpha").rc == 0
    alpha = _login(gpubox, "gpubox-alpha", ssh_host="10.8.0.5", ssh_port=2222, ssh_user="jo")
    assert alpha[:3] == ["10.8.0.5", "2222", "jo"]


def _plain(value):
    """ansible-inventory's JSON without its {"__ansible_unsafe": ...} wrappers."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, list) else value


def _login(gpubox, host, **settings):
    """How Ansible would log in to an inventory host, with gpubox's group_vars as the playbooks see them."""
    env = {k: v for k, v in gpubox.env.items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
    fields = "[ansible_host, ansible_port | string, ansible_user, ansible_ssh_common_args]"
    cmd = [str(Path(sys.executable).parent / "ansible"), host, *INVENTORY, "--playbook-dir", "playbooks",
           "-m", "ansible.builtin.debug", "-a", f"msg={{{{ {fields} }}}}"]
    if settings:
        cmd += ["-e", json.dumps(settings)]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("=>") + 2:])["msg"]
