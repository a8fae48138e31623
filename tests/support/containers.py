"""Systemd containers that stand in for EC2 hosts (scripts/standin.py), for the tests.

Whatever is missing (Docker, root, loop devices) makes the test skip, saying why, or fail when
GPUBOX_REQUIRE_INTEGRATION=1 (CI, where everything must be there). Ports are published on 127.0.0.1
only; everything else goes through `docker exec`.
"""

import contextlib
import json
import os
import re
import sys
import uuid
from pathlib import Path

import pytest

from standin import (  # noqa: F401 (re-exported for the tests)
    HOST_SETTINGS, REPO, exec_in, free_port, prepare_docker, remove_host, run, start_container, start_host,
)


def skip(reason):
    """Skip, or fail when GPUBOX_REQUIRE_INTEGRATION=1."""
    if os.environ.get("GPUBOX_REQUIRE_INTEGRATION") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def docker_ready():
    try:
        prepare_docker()
    except RuntimeError as error:
        skip(str(error))


def loop_device(image_file, size_mib=64):
    """A loop device over image_file (a new sparse file of size_mib, or the file as it is when None)."""
    if os.geteuid() != 0:
        skip("loop devices need root")
    if size_mib is not None:
        with open(image_file, "wb") as handle:
            handle.truncate(size_mib * 1024 * 1024)
    result = run("losetup", "--find", "--show", str(image_file), check=False)
    if result.returncode != 0:
        skip(f"cannot attach a loop device (root and /dev/loop-control needed): {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def systemd_container(prefix, *docker_args):
    """A running systemd container (removed afterwards): yields its name."""
    docker_ready()
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        start_container(name, *docker_args)
        yield name
    finally:
        remove_host(name)


@contextlib.contextmanager
def stand_in_host(prefix, ssh_port, public_key, *docker_args, image=None):
    """A running stand-in instance with sshd on 127.0.0.1:ssh_port (removed afterwards): yields its name. `image`:
    another image than the test image (a baked box: a stand-in committed after configure)."""
    docker_ready()
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        start_host(name, ssh_port, public_key, *docker_args, **({"image": image} if image else {}))
        yield name
    finally:
        remove_host(name)


def sh(container, command):
    """Run a shell command in the container as root; returns its stdout, stripped ('' on failure)."""
    return run("docker", "exec", container, "sh", "-c", command, check=False).stdout.strip()


def converge(work, container, playbook, host_vars=None, **variables):
    """Run playbook (its text) on the container through `docker exec` (community.docker.docker).

    host_vars go into the inventory, as group_vars would; variables are given with -e.
    Returns (returncode, changed count from the recap, output).
    """
    path = work / "playbook.yml"
    path.write_text(playbook)
    inventory = work / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {container: {
        "ansible_connection": "community.docker.docker", **(host_vars or {})}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_NOCOLOR="1")
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    result = run(str(ansible_playbook), "-i", str(inventory), "-e", json.dumps(variables), str(path),
                 check=False, env=env, cwd=str(REPO))
    output = result.stdout + result.stderr
    recap = re.search(r"changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", output)
    return result.returncode, int(recap.group(1)) if recap else -1, output
