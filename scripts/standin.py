"""The stand-ins for AWS and for an EC2 instance, shared by `make demo` (scripts/demo.py) and the tests.

- AWS: moto server on a free port of 127.0.0.1.
- The instance: a systemd container from the image scripts/build-test-image.sh builds, with sshd's
  port 22 published on 127.0.0.1 only and the user's public key installed, as cloud-init does on EC2.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Same names as scripts/build-test-image.sh: GPUBOX_TEST_IMAGE (name) and GPUBOX_TEST_TAG.
IMAGE = f"{os.environ.get('GPUBOX_TEST_IMAGE', 'gpubox-test')}:{os.environ.get('GPUBOX_TEST_TAG', 'debian12')}"
# The image's login user (uid 1000, passwordless sudo), as on an Ubuntu AMI.
LOGIN_USER = "ubuntu"
# An x86_64 Ubuntu AMI that moto ships (moto has no Deep Learning AMI parameters).
MOTO_UBUNTU_AMI = "ami-1e749f67"
# systemd as PID 1 on this kind of machine: --privileged fails, these settings work (docs/testing.md).
SYSTEMD_ARGS = [
    "--cap-add", "SYS_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
]
# The host's CA bundle, for pip inside the container (containers do not trust it otherwise).
CA_BUNDLE = "/etc/gpubox-test/corporate-ca.crt"
# pip's cache and wheelhouse, kept on this machine: a second run downloads nothing.
PIP_CACHE = "/var/cache/pip"
MOUNTS = [
    "-v", f"/etc/ssl/certs/ca-certificates.crt:{CA_BUNDLE}:ro",
    "-v", f"{REPO}/.cache/pip:{PIP_CACHE}:rw",
]
# gpubox settings for a CPU stand-in: no GPU, Python envs as venvs installed through that cache.
HOST_SETTINGS = {
    "gpu_required": False,
    "python_envs_manager": "venv",
    "python_envs_ca_bundle": CA_BUNDLE,
    "python_envs_pip_cache_dir": PIP_CACHE,
    "python_envs_pip_find_links": [f"{PIP_CACHE}/wheels"],
}


def run(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kwargs)


_GIVEN_PORTS = set()


def free_port():
    """A free port of 127.0.0.1, never one this process was given before: the kernel may hand the same port out twice
    in a row, and two servers (moto and a stand-in's sshd) would then be told to use the same one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def prepare_docker():
    """Start dockerd and build the image when needed (both quick when already done); raises on failure."""
    for script in ("ensure-docker.sh", "build-test-image.sh"):
        result = run("bash", str(REPO / "scripts" / script), check=False)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/{script} failed: {result.stderr.strip()[-500:]}")


def start_moto(port):
    """moto server on 127.0.0.1:port, in the background: returns the process once it answers."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    # Without the caller's AWS settings: moto calls botocore itself, and a profile it cannot find fails every request.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def start_container(name, *docker_args, image=IMAGE):
    """Start systemd container `name` from the test image (or `image`) and wait until systemd is up."""
    run("docker", "run", "-d", "--name", name, *SYSTEMD_ARGS, *docker_args, image, "/lib/systemd/systemd")
    deadline = time.monotonic() + 90
    state = ""
    while time.monotonic() < deadline:
        state = run("docker", "exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise RuntimeError(f"systemd in container {name} did not come up: {state}")


def start_host(name, ssh_port, public_key, *docker_args, image=IMAGE):
    """Start the stand-in instance `name` with sshd on 127.0.0.1:ssh_port and public_key authorised."""
    start_container(name, "-p", f"127.0.0.1:{ssh_port}:22", *MOUNTS, *docker_args, image=image)
    home = f"/home/{LOGIN_USER}"
    exec_in(name, f"install -d -m 0700 -o {LOGIN_USER} -g {LOGIN_USER} {home}/.ssh && "
                  f"install -m 0600 -o {LOGIN_USER} -g {LOGIN_USER} /dev/stdin {home}/.ssh/authorized_keys && "
                  "systemctl is-active --quiet ssh", stdin=public_key + "\n")


def exec_in(name, command, stdin=None):
    """Run a shell command in the container as root; returns its stdout, stripped. Raises on failure."""
    args = ["docker", "exec", *(["-i"] if stdin is not None else []), name, "sh", "-c", command]
    result = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command!r} failed in {name}: {result.stderr.strip()}")
    return result.stdout.strip()


def remove_host(name):
    run("docker", "rm", "-f", name, check=False)
