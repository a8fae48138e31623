"""The per-box SSH config: `ssh gpubox-NAME` resolves to the box, with the Jupyter tunnel."""

import os
import stat
import subprocess


def ssh_settings(home, alias):
    """What the ssh client would use for alias (ssh -G reads the config; it connects nowhere)."""
    out = subprocess.run(["ssh", "-F", str(home / ".ssh/config"), "-G", alias],
                         capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL).stdout
    settings = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, value)
    return settings


def test_launch_writes_a_host_block_that_ssh_uses(gpubox, aws):
    ssh = gpubox.home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "config").write_text("Host old\n    HostName 192.0.2.1\n")

    assert gpubox.launch().rc == 0
    config = (ssh / "config").read_text().splitlines()
    assert config[0] == f"Include {ssh}/gpubox.d/*.conf"
    assert config[1:] == ["Host old", "    HostName 192.0.2.1"]
    block = ssh / "gpubox.d/gpubox.conf"
    assert stat.S_IMODE(os.stat(block).st_mode) == 0o600

    seen = ssh_settings(gpubox.home, "gpubox-gpubox")
    assert seen["hostname"] == aws.instance()["PublicIpAddress"]
    assert seen["user"] == "ubuntu"
    assert seen["identityfile"] == f"{ssh}/id_ed25519"
    assert seen["localforward"] == "8888 [localhost]:8888"
    assert seen["stricthostkeychecking"] == "accept-new"
    assert seen["userknownhostsfile"] == f"{ssh}/gpubox.d/gpubox.known_hosts"
    # The host key is filed under the box's name and instance, not its address, which changes on every start.
    assert seen["hostkeyalias"] == f"gpubox-gpubox.{aws.instance()['InstanceId']}"
    assert ssh_settings(gpubox.home, "old")["hostname"] == "192.0.2.1"

    again = gpubox.launch()
    assert again.changed == 0
    assert (ssh / "config").read_text().count("Include") == 1


def test_start_points_the_block_at_the_new_address_and_teardown_removes_it(gpubox, aws):
    assert gpubox.launch(name="alpha").rc == 0
    assert gpubox.launch(name="beta").rc == 0
    assert gpubox.run("stop.yml", name="alpha").rc == 0
    assert gpubox.run("start.yml", name="alpha").rc == 0
    assert ssh_settings(gpubox.home, "gpubox-alpha")["hostname"] == aws.instance("alpha")["PublicIpAddress"]

    # The overrides (a VPN, a bastion's forward) reach the block and the printed SSH command.
    routed = gpubox.run("start.yml", name="alpha", ssh_host="10.8.0.5", ssh_port=2222, ssh_user="jo")
    assert routed.rc == 0, routed.text
    assert routed.said(f"SSH: ssh -i {gpubox.home}/.ssh/id_ed25519 -p 2222 jo@10.8.0.5")
    seen = ssh_settings(gpubox.home, "gpubox-alpha")
    assert (seen["hostname"], seen["port"], seen["user"]) == ("10.8.0.5", "2222", "jo")

    key = " ".join((gpubox.home / ".ssh/id_ed25519.pub").read_text().split()[:2])
    alias = f"gpubox-alpha.{aws.instance('alpha')['InstanceId']}"
    (gpubox.home / ".ssh/gpubox.d/alpha.known_hosts").write_text(f"{alias} {key}\n")
    assert gpubox.run("teardown.yml", name="alpha", confirm=True).rc == 0
    folder = gpubox.home / ".ssh/gpubox.d"
    assert sorted(p.name for p in folder.iterdir()) == ["beta.conf"]
    assert ssh_settings(gpubox.home, "gpubox-beta")["hostname"] == aws.instance("beta")["PublicIpAddress"]
    # With the block gone, the alias is just a name again.
    assert ssh_settings(gpubox.home, "gpubox-alpha")["hostname"] == "gpubox-alpha"


def test_ssh_config_write_false_leaves_the_ssh_config_alone(gpubox, aws):
    assert gpubox.launch(ssh_config_write=False).rc == 0
    assert not (gpubox.home / ".ssh/config").exists()
    assert not (gpubox.home / ".ssh/gpubox.d").exists()


def test_a_box_of_the_same_name_in_another_region_keeps_its_block(gpubox, aws):
    assert gpubox.launch(name="lab").rc == 0
    west = gpubox.launch(name="lab", env={"AWS_REGION": "us-west-2"})
    assert west.rc == 0, west.text
    # One `ssh gpubox-lab`: the last launch's. Removing the other region's box leaves it.
    west_ip = aws.in_region("us-west-2").instance("lab")["PublicIpAddress"]
    assert ssh_settings(gpubox.home, "gpubox-lab")["hostname"] == west_ip
    # Both boxes' host keys, each under its own instance: removing one box forgets only its key.
    key = " ".join((gpubox.home / ".ssh/id_ed25519.pub").read_text().split()[:2])
    east_alias = f"gpubox-lab.{aws.instance('lab')['InstanceId']}"
    west_alias = f"gpubox-lab.{aws.in_region('us-west-2').instance('lab')['InstanceId']}"
    known_hosts = gpubox.home / ".ssh/gpubox.d/lab.known_hosts"
    known_hosts.write_text(f"{east_alias} {key}\n{west_alias} {key}\n")
    assert gpubox.run("teardown.yml", name="lab", confirm=True).rc == 0
    assert ssh_settings(gpubox.home, "gpubox-lab")["hostname"] == west_ip
    assert [line.split()[0] for line in known_hosts.read_text().splitlines() if line.strip()] == [west_alias]
    assert gpubox.run("teardown.yml", name="lab", confirm=True, env={"AWS_REGION": "us-west-2"}).rc == 0
    assert not (gpubox.home / ".ssh/gpubox.d/lab.conf").exists()
    assert not known_hosts.exists()
