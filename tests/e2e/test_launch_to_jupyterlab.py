"""From nothing to JupyterLab in a browser, the way a user walks it.

moto server on 127.0.0.1 stands in for AWS, and a systemd container with sshd (port 22 published on
127.0.0.1 only, a loop device as its data volume) stands in for the EC2 instance. launch.yml provisions
in moto and configures the container through the ssh_host/ssh_port overrides; the test then runs the
tunnel command that launch printed, drives headless Chromium through the tunnel to the printed URL, runs
the sample notebook, re-runs launch (nothing changes), checks `ssh gpubox-NAME`, and tears down.
The screenshot is saved to build/test-artifacts/jupyterlab-through-tunnel.png (the README's picture).

Then the box is baked (bake.yml: an image in moto), and a second stand-in committed from the configured container
plays an instance launched from that image (launch.yml -e ami=baked): time-to-notebook, from the launch to JupyterLab
answering through the tunnel, is printed for both and saved to build/test-artifacts/time-to-notebook.json (measured,
never asserted).
"""

import json
import shlex
import time
import uuid

import pytest

from support.browser import run_notebook
from standin import HOST_SETTINGS, MOTO_UBUNTU_AMI
from support.containers import free_port, loop_device, run, sh, stand_in_host
from support.gpubox import MY_CIDR, REPO, Aws, Gpubox, moto_server
from support.snapshot_tags import snapshot_tags
from support.tunnel import background, jupyter_answers

NAME = "e2e"
ARTIFACTS = REPO / "build" / "test-artifacts"
SCREENSHOT = ARTIFACTS / "jupyterlab-through-tunnel.png"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """moto, a user's HOME with an SSH key, and the stand-in host holding that key (as cloud-init would)."""
    work = tmp_path_factory.mktemp("e2e")
    home = work / "home"
    (home / ".ssh").mkdir(parents=True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", str(home / ".ssh" / "id_ed25519"))
    public_key = (home / ".ssh" / "id_ed25519.pub").read_text().strip()
    ssh_port = free_port()
    loop = loop_device(work / "data-volume.img", size_mib=256)
    try:
        with moto_server() as moto, stand_in_host("gpubox-e2e", ssh_port, public_key, "--device", loop) as host:
            settings = {
                "name": NAME, "type": "g5.xlarge", "ami": MOTO_UBUNTU_AMI, "ssh_cidr": MY_CIDR,
                "ssh_host": "127.0.0.1", "ssh_port": ssh_port, "tunnel_port": free_port(),
                "data_volume_device": loop, **HOST_SETTINGS,
            }
            yield {"gpubox": Gpubox(moto, home), "aws": Aws(moto), "host": host, "settings": settings, "work": work,
                   "public_key": public_key}
    finally:
        run("losetup", "-d", loop, check=False)


def line_after(result, label):
    """The text after `label` in the launch's closing message."""
    found = [m.split(label, 1)[1].strip() for m in result.messages if label in m]
    assert found, f"no '{label}' in the closing message:\n{result.text[-3000:]}"
    return found[-1]


def test_launch_opens_jupyterlab_through_the_tunnel_and_teardown_leaves_only_the_data(world):
    gpubox, aws, host, settings = world["gpubox"], world["aws"], world["host"], world["settings"]

    started = time.monotonic()
    first = gpubox.run("launch.yml", timeout=1800, **settings)
    assert first.rc == 0, first.text[-6000:]

    # The EC2 side: one instance, and the data volume attached to it.
    instance = aws.instance(NAME)
    assert instance["InstanceType"] == "g5.xlarge"
    assert [v["Attachments"][0]["InstanceId"] for v in aws.data_volumes(NAME)] == [instance["InstanceId"]]
    # The host side: JupyterLab serves the notebooks from the data volume, on loopback only.
    assert sh(host, "findmnt -n -o SOURCE /data") == settings["data_volume_device"]
    assert sh(host, "systemctl is-active jupyter") == "active"
    assert sh(host, "ss -Hltn 'sport = :8888' | awk '{print $4}'") == "127.0.0.1:8888"
    assert sh(host, "systemctl is-active gpubox-autostop.timer") == "active"
    # Once the box has its auto-stop settings, its tags say so (status.yml shows them).
    tags = aws.tags(instance)
    assert (tags["gpubox:autostop-minutes"], tags["gpubox:max-hours"]) == ("60", "0")

    summary = "\n".join(first.messages)
    assert f"Box '{NAME}' is ready: g5.xlarge with 1x NVIDIA A10G at 127.0.0.1, about $" in summary
    assert f"ansible-playbook stop.yml -e name={NAME}" in summary
    assert f"ansible-playbook teardown.yml -e name={NAME}" in summary
    assert f"ssh gpubox-{NAME}" in summary
    assert "It stops itself after 60 idle minutes" in summary
    tunnel = line_after(first, "Open the tunnel and leave it running:")
    url = line_after(first, "Open JupyterLab:")
    key = gpubox.home / ".ssh" / "id_ed25519"
    assert tunnel.startswith(f"ssh -i {key} -p {settings['ssh_port']} ")
    # The host key Ansible accepted is filed under the box's name and instance: the tunnel checks it, whatever the
    # address.
    assert f"-o HostKeyAlias=gpubox-{NAME}.{instance['InstanceId']} " in tunnel
    assert tunnel.endswith(f"-o ExitOnForwardFailure=yes -N -L {settings['tunnel_port']}:localhost:8888 ubuntu@127.0.0.1")
    assert url.startswith(f"http://127.0.0.1:{settings['tunnel_port']}/lab?token=")
    token = url.split("token=", 1)[1]
    # Shown once, in the closing message; never in any other task's output.
    assert token and json.dumps(first.output).count(token) == 1 and token not in first.stderr

    # The exact tunnel command that launch printed, then a real browser through it.
    with background(shlex.split(tunnel)) as proc:
        assert jupyter_answers(url, proc) == 200
        to_notebook = {"fresh image": round(time.monotonic() - started, 1)}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        outputs = run_notebook(url, "gpubox-sample.ipynb", SCREENSHOT)
    assert "TensorFlow 2.21.0 | Keras 3.15.1" in outputs
    assert "Final loss:" in outputs
    assert "<image/png>" in outputs  # the loss plot
    assert SCREENSHOT.stat().st_size > 10_000

    again = gpubox.run("launch.yml", timeout=1800, **settings)
    assert again.rc == 0, again.text[-6000:]
    changed = {host_name: stats["changed"] for host_name, stats in again.output["stats"].items()}
    assert set(changed) == {"localhost", f"gpubox-{NAME}"}
    assert set(changed.values()) == {0}, changed

    # The written SSH config: `ssh gpubox-e2e` logs in and opens the same tunnel.
    ssh_config = gpubox.home / ".ssh" / "config"
    assert run("ssh", "-F", str(ssh_config), f"gpubox-{NAME}", "--", "id", "-un").stdout.strip() == "ubuntu"
    with background(["ssh", "-F", str(ssh_config), "-N", f"gpubox-{NAME}"]) as proc:
        assert jupyter_answers(url.replace("/lab?", "/api/status?"), proc) == 200

    # autostop.yml: auto-stop changed on the running box in seconds, every other setting kept, the tags current.
    tuned = gpubox.run("autostop.yml", name=NAME, ssh_host=settings["ssh_host"], ssh_port=settings["ssh_port"],
                       minutes=120, max_hours=8, hold="2h")
    assert tuned.rc == 0, tuned.text[-4000:]
    config = json.loads(sh(host, "cat /etc/gpubox/autostop.json"))
    assert (config["minutes"], config["max_hours"], config["warn_minutes"], config["hung_minutes"]) == (120, 8, 10, 30)
    for line in ("Auto-stop: after 120 idle minutes", "Cap: stops 8 hours after start-up", "Held until "):
        assert tuned.said(line), tuned.text[-3000:]
    tags = aws.tags(aws.instance(NAME))
    assert (tags["gpubox:autostop-minutes"], tags["gpubox:max-hours"]) == ("120", "8")
    listed = gpubox.run("status.yml")
    assert listed.rc == 0 and any(line.split()[0] == NAME and line.split()[-2:] == ["120m", "8h"]
                                  for message in listed.messages for line in message.splitlines() if line.strip()), \
        listed.text[-3000:]
    refused = gpubox.run("autostop.yml", name=NAME, minutes="soon")
    assert refused.rc != 0 and refused.said("autostop minutes 'soon' is not a whole number"), refused.text[-2000:]

    to_notebook["baked image"] = launch_from_a_baked_image(world, aws)
    (ARTIFACTS / "time-to-notebook.json").write_text(json.dumps(to_notebook) + "\n")
    print(f"time to notebook, launch to JupyterLab through the tunnel (s): {to_notebook}")

    down = gpubox.run("teardown.yml", name=NAME, confirm=True)
    assert down.rc == 0, down.text[-4000:]
    assert aws.instances(NAME) == []
    assert aws.groups() == [] and aws.keys() == []
    assert [v["State"] for v in aws.data_volumes(NAME)] == ["available"]
    assert not (gpubox.home / ".ssh" / "gpubox.d" / f"{NAME}.conf").exists()
    assert not (gpubox.home / ".ssh" / "gpubox.d" / f"{NAME}.known_hosts").exists()


def launch_from_a_baked_image(world, aws):
    """Bake the configured box, launch a second box with ami=baked (a stand-in committed from the first plays its
    instance), and return the seconds from its launch to JupyterLab answering through its tunnel."""
    gpubox, host, settings = world["gpubox"], world["host"], world["settings"]
    with snapshot_tags(gpubox, gpubox.env["AWS_ENDPOINT_URL"], aws.ec2):  # moto cannot tag snapshots at CreateImage
        baked = gpubox.run("bake.yml", name=NAME, ssh_host=settings["ssh_host"], ssh_port=settings["ssh_port"],
                           no_reboot=True)
    assert baked.rc == 0, baked.text[-4000:]
    [image] = aws.ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:gpubox:name", "Values": [NAME]}])["Images"]

    tag = f"gpubox-baked:{uuid.uuid4().hex[:8]}"
    run("docker", "commit", host, tag)
    ssh_port = free_port()
    loop = loop_device(world["work"] / "baked-data-volume.img", size_mib=64)
    twin = {**settings, "name": f"{NAME}-baked", "ami": "baked", "ssh_port": ssh_port, "tunnel_port": free_port(),
            "data_volume_device": loop}
    try:
        with stand_in_host("gpubox-e2e-baked", ssh_port, world["public_key"], "--device", loop, image=tag):
            started = time.monotonic()
            second = gpubox.run("launch.yml", timeout=1800, **twin)
            assert second.rc == 0, second.text[-6000:]
            assert aws.instance(twin["name"])["ImageId"] == image["ImageId"]
            with background(shlex.split(line_after(second, "Open the tunnel and leave it running:"))) as proc:
                assert jupyter_answers(line_after(second, "Open JupyterLab:"), proc) == 200
                seconds = round(time.monotonic() - started, 1)
            down = gpubox.run("teardown.yml", name=twin["name"], confirm=True, delete_data=True)
            assert down.rc == 0, down.text[-4000:]
    finally:
        run("docker", "rmi", "-f", tag, check=False)
        run("losetup", "-d", loop, check=False)
    return seconds
