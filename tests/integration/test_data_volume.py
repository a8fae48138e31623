"""The data_volume role on real block devices: loop devices handed to a systemd container.

Needs root, loop devices and Docker. Starts dockerd with scripts/ensure-docker.sh and builds the
image with scripts/build-test-image.sh when they exist; skips (saying why) when something is missing.
All traffic goes into the container through `docker exec` (the community.docker.docker connection).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Same names as scripts/build-test-image.sh: GPUBOX_TEST_IMAGE (name) and GPUBOX_TEST_TAG.
IMAGE = f"{os.environ.get('GPUBOX_TEST_IMAGE', 'gpubox-test')}:{os.environ.get('GPUBOX_TEST_TAG', 'debian12')}"
USER = "gpuuser"
SYSTEMD_ARGS = [
    "--cap-add", "SYS_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
]
PLAYBOOK = """---
- name: Run the data_volume role
  hosts: all
  gather_facts: false
  roles:
    - role: data_volume
"""


def skip(reason):
    """Skip, or fail when GPUBOX_REQUIRE_INTEGRATION=1 (CI, where everything must be there)."""
    if os.environ.get("GPUBOX_REQUIRE_INTEGRATION") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def run(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kwargs)


def _docker_ready():
    ensure = ROOT / "scripts" / "ensure-docker.sh"
    if ensure.exists():
        result = run("bash", str(ensure), check=False)
        if result.returncode != 0:
            skip(f"ensure-docker.sh failed: {result.stderr.strip()}")
    if not shutil.which("docker") or run("docker", "info", check=False).returncode != 0:
        skip("Docker is not running and scripts/ensure-docker.sh is not there to start it")
    build = ROOT / "scripts" / "build-test-image.sh"
    if build.exists():  # quick when the image is up to date
        result = run("bash", str(build), check=False)
        if result.returncode != 0:
            skip(f"build-test-image.sh failed: {result.stderr.strip()[-500:]}")
    if run("docker", "image", "inspect", IMAGE, check=False).returncode != 0:
            skip(f"image {IMAGE} is missing and scripts/build-test-image.sh did not build it")


def _loop_device(image_file):
    result = run("losetup", "--find", "--show", str(image_file), check=False)
    if result.returncode != 0:
        skip(f"cannot attach a loop device (root and /dev/loop-control needed): {result.stderr.strip()}")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A systemd container with two loop devices: one blank, one holding an ext2 filesystem with a file."""
    if os.geteuid() != 0:
        skip("loop devices and mounts need root")
    _docker_ready()
    work = tmp_path_factory.mktemp("data-volume")
    loops, name = [], f"gpubox-data-volume-{uuid.uuid4().hex[:8]}"
    try:
        blank = work / "blank.img"
        with open(blank, "wb") as handle:
            handle.truncate(64 * 1024 * 1024)
        seeded_dir = work / "seed"
        seeded_dir.mkdir()
        (seeded_dir / "notes.txt").write_text("keep me\n")
        seeded = work / "seeded.img"
        with open(seeded, "wb") as handle:
            handle.truncate(64 * 1024 * 1024)
        run("mkfs.ext2", "-q", "-L", "old-data", "-d", str(seeded_dir), str(seeded))
        loops = [_loop_device(blank), _loop_device(seeded)]
        devices = [arg for loop in loops for arg in ("--device", loop)]
        run("docker", "run", "-d", "--name", name, *SYSTEMD_ARGS, *devices, IMAGE, "/lib/systemd/systemd")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = run("docker", "exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(1)
        run("docker", "exec", name, "useradd", "--create-home", "--user-group", USER)
        yield {"name": name, "blank": loops[0], "seeded": loops[1], "work": work}
    finally:
        run("docker", "rm", "-f", name, check=False)
        for loop in loops:
            run("losetup", "-d", loop, check=False)


def converge(box, **variables):
    """Run the role in the container; returns (returncode, changed count, output)."""
    playbook = box["work"] / "playbook.yml"
    playbook.write_text(PLAYBOOK)
    inventory = box["work"] / "inventory.yml"
    inventory.write_text(json.dumps(
        {"all": {"hosts": {box["name"]: {"ansible_connection": "community.docker.docker"}}}}
    ))
    extra = {"data_volume_owner": USER, **variables}
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_NOCOLOR="1",
    )
    result = run(
        "ansible-playbook", "-i", str(inventory),
        "-e", json.dumps(extra), str(playbook), check=False, env=env, cwd=str(ROOT),
    )
    output = result.stdout + result.stderr
    recap = re.search(r"changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", output)
    changed = int(recap.group(1)) if recap else -1
    return result.returncode, changed, output


def sh(box, command):
    return run("docker", "exec", box["name"], "sh", "-c", command, check=False).stdout.strip()


def uuid_of(box, device):
    return sh(box, f"blkid --probe --output value --match-tag UUID {device}")


def test_blank_volume_is_formatted_once_and_mounted_by_uuid(box):
    device = box["blank"]
    assert uuid_of(box, device) == ""

    rc, changed, output = converge(box, data_volume_device=device)
    assert rc == 0, output
    assert changed > 0
    first_uuid = uuid_of(box, device)
    assert first_uuid
    assert sh(box, f"blkid --probe --output value --match-tag TYPE {device}") == "ext4"
    assert sh(box, f"blkid --probe --output value --match-tag LABEL {device}") == "gpubox-data"
    assert sh(box, "findmnt -n -o SOURCE,FSTYPE /data").split() == [device, "ext4"]
    assert f"UUID={first_uuid} /data ext4 defaults,nofail" in sh(box, "cat /etc/fstab")
    assert sh(box, "stat -c '%U %G %a' /data") == f"{USER} {USER} 755"

    rc, changed, output = converge(box, data_volume_device=device)
    assert (rc, changed) == (0, 0), output
    assert uuid_of(box, device) == first_uuid


def test_volume_found_by_id_or_discovered_is_the_same_disk(box):
    """Fake the udev link EBS volumes get on Nitro instances; the mount from the first test stays."""
    device = box["blank"]
    if not sh(box, "findmnt -n -o SOURCE /data"):
        converge(box, data_volume_device=device)
    first_uuid = uuid_of(box, device)
    link = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
    sh(box, f"mkdir -p /dev/disk/by-id && ln -sf {device} {link}")
    try:
        rc, changed, output = converge(box, data_volume_id="vol-0123456789abcdef0")
        assert (rc, changed) == (0, 0), output
        rc, changed, output = converge(box)
        assert (rc, changed) == (0, 0), output
        assert f"{device} (ext4, UUID {first_uuid}) is mounted at /data" in output
        rc, changed, output = converge(box, data_volume_id="vol-0fffffffffffffff0", data_volume_wait_timeout=1,
                                       data_volume_mount_point="/elsewhere")
        assert rc != 0
        assert "The data volume vol-0fffffffffffffff0 is not on" in output
        assert sh(box, "test -e /elsewhere && echo exists") == ""
    finally:
        sh(box, f"rm -f {link}")
    assert uuid_of(box, device) == first_uuid


def test_volume_with_a_filesystem_is_never_formatted(box):
    device = box["seeded"]
    before = uuid_of(box, device)
    assert before

    rc, changed, output = converge(box, data_volume_device=device, data_volume_mount_point="/old")
    assert rc == 0, output
    assert uuid_of(box, device) == before
    assert sh(box, f"blkid --probe --output value --match-tag TYPE {device}") == "ext2"
    assert sh(box, "cat /old/notes.txt") == "keep me"
    assert sh(box, "findmnt -n -o SOURCE,FSTYPE /old").split() == [device, "ext2"]

    rc, changed, output = converge(box, data_volume_device=device, data_volume_mount_point="/old")
    assert (rc, changed) == (0, 0), output
    assert uuid_of(box, device) == before


def test_missing_volume_that_was_asked_for_stops_the_run(box):
    rc, changed, output = converge(box, data_volume_device="/dev/gpubox-no-such-disk", data_volume_mount_point="/lost")
    assert rc != 0
    assert "The data volume /dev/gpubox-no-such-disk is not on" in output
    assert "Notebooks are not put on the root disk" in output
    assert sh(box, "test -e /lost && echo exists") == ""

    rc, changed, output = converge(box, data_volume_id="vol-0000000000000dead", data_volume_wait_timeout=2,
                                   data_volume_mount_point="/lost")
    assert rc != 0
    assert "The data volume vol-0000000000000dead is not on" in output and "after 2 s" in output
    assert sh(box, "test -e /lost && echo exists") == ""


def test_without_a_data_volume_a_directory_on_the_root_disk_is_used(box):
    rc, changed, output = converge(box, data_volume_mount_point="/scratch")
    assert rc == 0, output
    assert "WARNING: no data volume found" in output
    assert sh(box, "stat -c '%F %U' /scratch") == f"directory {USER}"
    assert sh(box, "findmnt -n /scratch") == ""

    rc, changed, output = converge(box, data_volume_mount_point="/scratch")
    assert (rc, changed) == (0, 0), output
