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
    alpha = {k: v.get("__ansible_unsafe", v) if isinstance(v, dict) else v for k, v in hostvars["gpubox-alpha"].items()}
    assert alpha["ansible_host"] == aws.instance("alpha")["PublicIpAddress"]
    assert (alpha["ansible_user"], alpha["gpubox_name"], alpha["gpubox_image"]) == ("ubuntu", "alpha", "custom")
    assert alpha["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=accept-new"
    assert "localhost" in inventory["ungrouped"]["hosts"]
