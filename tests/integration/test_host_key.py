"""A box's host key is pinned by the box's name and instance, not its address: a changed key is refused for real.

A stopped box comes back with a new public IP. With known_hosts keyed by address and StrictHostKeyChecking
accept-new, any key was then accepted at the new address. Here a stand-in box (a systemd container with sshd)
is reachable at two addresses (two ports of 127.0.0.1, as a box before and after a start); its host key is
accepted at the first, then replaced. Ansible's own login (the group_vars every host play uses) and
`ssh gpubox-NAME` must both refuse it at the second address. A new instance of the box starts afresh.

Traffic: SSH to ports published on 127.0.0.1, moto on 127.0.0.1, the rest through `docker exec`.
"""

import json
import subprocess
import sys
from pathlib import Path

from standin import MOTO_UBUNTU_AMI
from support.containers import free_port, run, sh, stand_in_host
from support.gpubox import MY_CIDR, REPO, Aws, Gpubox, moto_server

NAME = "pin"
CHANGED = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")


def ansible_ping(gpubox, port):
    """Ansible's own login to the box found by the aws_ec2 inventory, with gpubox's connection settings."""
    env = {k: v for k, v in gpubox.env.items() if k != "ANSIBLE_STDOUT_CALLBACK"}
    cmd = [str(Path(sys.executable).parent / "ansible"), f"gpubox-{NAME}", "-i", "inventory/aws_ec2.yml",
           "--playbook-dir", "playbooks", "-m", "ansible.builtin.ping",
           "-e", json.dumps({"ssh_host": "127.0.0.1", "ssh_port": port})]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def ssh_alias(gpubox):
    return run("ssh", "-F", str(gpubox.home / ".ssh" / "config"), "-o", "BatchMode=yes", f"gpubox-{NAME}", "true",
               check=False)


def test_a_changed_host_key_is_refused_at_the_boxs_new_address(tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519"))
    before, after = free_port(), free_port()
    public_key = (home / ".ssh" / "id_ed25519.pub").read_text().strip()
    with moto_server() as moto, stand_in_host("gpubox-pin", before, public_key, "-p", f"127.0.0.1:{after}:22") as host:
        gpubox, aws = Gpubox(moto, home), Aws(moto)
        settings = {"name": NAME, "type": "g5.xlarge", "ami": MOTO_UBUNTU_AMI, "ssh_cidr": MY_CIDR,
                    "configure": False, "data_volume_size": 0, "ssh_host": "127.0.0.1"}
        launched = gpubox.run("launch.yml", ssh_port=before, **settings)
        assert launched.rc == 0, launched.text

        # First contact: the key is accepted, and filed under the box's name.
        first = ansible_ping(gpubox, before)
        assert first.returncode == 0, first.stdout + first.stderr
        known_hosts = home / ".ssh" / "gpubox.d" / f"{NAME}.known_hosts"
        assert len(known_hosts.read_text().splitlines()) == 1
        # ssh-keygen -F finds an entry whether or not the names are hashed (HashKnownHosts).
        alias = f"gpubox-{NAME}.{aws.instance(NAME)['InstanceId']}"
        assert run("ssh-keygen", "-F", alias, "-f", str(known_hosts), check=False).returncode == 0
        assert run("ssh-keygen", "-F", f"[127.0.0.1]:{before}", "-f", str(known_hosts), check=False).returncode != 0
        assert ssh_alias(gpubox).returncode == 0

        # Someone else answers at the box's next address.
        sh(host, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A && systemctl restart ssh")
        refused = ansible_ping(gpubox, after)
        assert refused.returncode != 0
        assert any(m in refused.stdout + refused.stderr for m in CHANGED), refused.stdout + refused.stderr

        started = gpubox.run("start.yml", name=NAME, ssh_host="127.0.0.1", ssh_port=after)
        assert started.rc == 0, started.text
        alias = ssh_alias(gpubox)
        assert alias.returncode != 0 and any(m in alias.stderr for m in CHANGED), alias.stderr

        # A new instance of the box (the old one terminated by hand, even by a launch interrupted before it could
        # tidy up) has a new key, filed under its own instance id: the old entry stays, and no longer matters.
        aws.ec2.terminate_instances(InstanceIds=[aws.instance(NAME)["InstanceId"]])
        again = gpubox.run("launch.yml", ssh_port=after, **settings)
        assert again.rc == 0, again.text
        assert ansible_ping(gpubox, after).returncode == 0
        assert ssh_alias(gpubox).returncode == 0
        assert len(known_hosts.read_text().splitlines()) == 2
