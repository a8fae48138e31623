#!/usr/bin/env python3
"""Time gpubox against moto server, side by side with Ansible's own start-up.

Usage: .venv/bin/python scripts/benchmark-launch.py [--runs N] [--host]
Without --host it times the AWS half alone (configure=false): a first launch, an identical re-run (nothing to
change), status and teardown, each beside an empty one-task playbook run the same way (same project, same
ansible.cfg), and prints each as a ratio of that empty playbook: the goals are a re-run within 4x and status
within 2x. With --host, launch also configures a stand-in instance (scripts/standin.py: a systemd container
with sshd on 127.0.0.1; needs Docker), so the first launch includes the Python env and JupyterLab installs
(from the pip cache when warm) and the re-run is the whole reconfigure pass.
Runs are interleaved, so that the machine's load weighs on all of them alike; medians are printed.
A benchmark, not a test: nothing here asserts a time.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import standin

# Ansible's own start-up: one task that runs no module, on localhost (lives with the benchmark, not the product).
EMPTY_PLAYBOOK = """---
- name: Do nothing
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""
GOALS = {"identical re-run": 4.0, "status": 2.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--host", action="store_true", help="configure a stand-in instance too")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    port = standin.free_port()
    moto = standin.start_moto(port)
    home = tempfile.mkdtemp(prefix="gpubox-bench-")
    empty = Path(home) / "empty.yml"
    empty.write_text(EMPTY_PLAYBOOK)
    env = {"PATH": os.environ["PATH"], "HOME": home, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    settings = {"type": "g5.xlarge", "ami": standin.MOTO_UBUNTU_AMI, "ssh_cidr": "203.0.113.7/32", "configure": False}
    container = None
    if args.host:
        standin.prepare_docker()
        key = Path(home) / ".ssh" / "id_ed25519"
        key.parent.mkdir(mode=0o700)
        standin.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        ssh_port, container = standin.free_port(), f"gpubox-bench-{os.getpid()}"
        settings.update(configure=True, ssh_host="127.0.0.1", ssh_port=ssh_port, data_volume_size=0,
                        **standin.HOST_SETTINGS)
    steps = {
        "first launch": ["launch.yml", "-e", json.dumps(settings)],
        "identical re-run": ["launch.yml", "-e", json.dumps(settings)],
        "status": ["status.yml"],
        "teardown": ["teardown.yml", "-e", '{"confirm": true, "delete_data": true}'],
    }
    timings = {"empty one-task playbook": [], **{step: [] for step in steps}}

    def timed(name, cmd):
        start = time.perf_counter()
        subprocess.run([str(bindir / "ansible-playbook"), *cmd], cwd=standin.REPO, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        timings[name].append(time.perf_counter() - start)

    try:
        for _ in range(args.runs):
            if container:  # a fresh instance for each first launch, as on EC2
                standin.remove_host(container)
                standin.start_host(container, settings["ssh_port"], (key.parent / "id_ed25519.pub").read_text())
                (key.parent / "gpubox.d" / "gpubox.known_hosts").unlink(missing_ok=True)
            for step, cmd in steps.items():
                timed("empty one-task playbook", [str(empty)])
                timed(step, cmd)
    finally:
        moto.terminate()
        if container:
            standin.remove_host(container)
    base = statistics.median(timings["empty one-task playbook"])
    goals = {} if args.host else GOALS  # issue 9's goals are for the AWS half
    for step, seconds in timings.items():
        median = statistics.median(seconds)
        ratio = f"{median / base:4.1f}x the empty playbook" + (f" (goal: at most {goals[step]:.0f}x)" if step in goals else "")
        print(f"{step:24s} median {median:6.2f} s  {ratio if step != 'empty one-task playbook' else '':48s}"
              f"  runs: {', '.join(f'{s:.2f}' for s in seconds)}")


if __name__ == "__main__":
    main()
