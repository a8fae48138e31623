"""The data_volume role on real block devices: loop devices handed to a systemd container.

Needs root, loop devices and Docker. Starts dockerd with scripts/ensure-docker.sh and builds the
image with scripts/build-test-image.sh when they exist; skips (saying why) when something is missing.
All traffic goes into the container through `docker exec` (the community.docker.docker connection).
"""


import pytest

from support.containers import converge as run_playbook
from support.containers import loop_device, run, systemd_container

USER = "gpuuser"
PLAYBOOK = """---
- name: Run the data_volume role
  hosts: all
  gather_facts: false
  roles:
    - role: data_volume
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A systemd container with two loop devices: one blank, one holding an ext2 filesystem with a file."""
    work = tmp_path_factory.mktemp("data-volume")
    seeded_dir = work / "seed"
    seeded_dir.mkdir()
    (seeded_dir / "notes.txt").write_text("keep me\n")
    seeded_image = work / "seeded.img"
    with open(seeded_image, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    run("mkfs.ext2", "-q", "-L", "old-data", "-d", str(seeded_dir), str(seeded_image))
    loops = []
    try:
        loops.append(loop_device(work / "blank.img"))
        loops.append(loop_device(seeded_image, size_mib=None))
        blank, seeded = loops
        with systemd_container("gpubox-data-volume", "--device", blank, "--device", seeded) as name:
            run("docker", "exec", name, "useradd", "--create-home", "--user-group", USER)
            yield {"name": name, "blank": blank, "seeded": seeded, "work": work}
    finally:
        for loop in loops:
            run("losetup", "-d", loop, check=False)


def converge(box, **variables):
    """Run the role in the container; returns (returncode, changed count, output)."""
    return run_playbook(box["work"], box["name"], PLAYBOOK, data_volume_owner=USER, **variables)


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
