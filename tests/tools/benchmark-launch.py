#!/usr/bin/env python3
"""Time gpubox against moto server and stand-in instances, side by side with what it is measured against.

Usage: .venv/bin/python tests/tools/benchmark-launch.py [--runs N] [--host]
Without --host it times the AWS half alone (configure=false): a first launch, an identical re-run (nothing to
change), status and teardown, each beside an empty one-task playbook run the same way (same project, same
ansible.cfg), and prints each as a ratio of that empty playbook: the goals are a re-run within 4x and status
within 2x.
With --host it times the host half on stand-in instances (scripts/standin.py: systemd containers with sshd on
127.0.0.1; needs Docker; the pip cache in .cache/pip makes it about downloads-free):
- a fresh configure (configure.yml -i on a fresh stand-in) beside the same installs done by a plain shell script
  (tests/tools/benchmark-configure-by-hand.sh) on another fresh stand-in: goal at most 1.2x;
- the first re-run after it, which saves the GPU check's report once more (it now says the check was reused);
- a no-op configure (the same settings again) beside one playbook of ansible.builtin.ping plus one
  ansible.builtin.setup on the same host: goals at most 15 s and 2x;
- a setting change (-e autostop_minutes=90, then -e python_envs_extra_packages=[defusedxml==0.7.1]), which should
  run only the role it belongs to.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import standin  # noqa: E402 (scripts/ is not on the path of a script run from tests/tools)

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
    parser.add_argument("--host", action="store_true", help="time the host half on stand-in instances instead")
    args = parser.parse_args()
    if args.host:
        return host_half(args.runs)
    bindir = Path(sys.executable).parent
    port = standin.free_port()
    moto = standin.start_moto(port)
    home = tempfile.mkdtemp(prefix="gpubox-bench-")
    empty = Path(home) / "empty.yml"
    empty.write_text(EMPTY_PLAYBOOK)
    env = {"PATH": os.environ["PATH"], "HOME": home, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    settings = {"type": "g5.xlarge", "ami": standin.MOTO_UBUNTU_AMI, "ssh_cidr": "203.0.113.7/32", "configure": False}
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
            for step, cmd in steps.items():
                timed("empty one-task playbook", [str(empty)])
                timed(step, cmd)
    finally:
        moto.terminate()
    base = statistics.median(timings["empty one-task playbook"])
    for step, seconds in timings.items():
        median = statistics.median(seconds)
        ratio = f"{median / base:4.1f}x the empty playbook" + (f" (goal: at most {GOALS[step]:.0f}x)" if step in GOALS else "")
        print(f"{step:24s} median {median:6.2f} s  {ratio if step != 'empty one-task playbook' else '':48s}"
              f"  runs: {', '.join(f'{s:.2f}' for s in seconds)}")


PING_AND_SETUP = """---
- name: Ping and gather facts
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
    - name: Gather facts
      ansible.builtin.setup:
"""


def host_half(runs):
    """Fresh configure against a shell script, the first re-run, a no-op configure against ping + setup, and two
    setting changes."""
    standin.prepare_docker()
    bindir = Path(sys.executable).parent
    home = Path(tempfile.mkdtemp(prefix="gpubox-bench-host-"))
    key = home / ".ssh" / "id_ed25519"
    key.parent.mkdir(mode=0o700)
    standin.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    public_key = (key.parent / "id_ed25519.pub").read_text()
    (home / "ping-and-setup.yml").write_text(PING_AND_SETUP)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANSIBLE_HOST_KEY_CHECKING": "false"}
    timings = {}
    containers = []

    def host(kind):
        name, port = f"gpubox-bench-{kind}-{os.getpid()}", standin.free_port()
        standin.remove_host(name)
        standin.start_host(name, port, public_key)
        containers.append(name)
        return name, port

    def timed(step, cmd):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=standin.REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL)
        timings.setdefault(step, []).append(time.perf_counter() - start)

    # Not "-i 127.0.0.1,": Ansible would take that host for localhost, and run the controller's tasks on it.
    def playbook(port, name, **extra):
        login = {"ansible_host": "127.0.0.1", "ansible_user": standin.LOGIN_USER, "ansible_port": port,
                 "ansible_ssh_private_key_file": str(key),
                 "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null", "autostop_minutes": 60,
                 "gpu_check_report_dir": str(home / "reports"), **standin.HOST_SETTINGS, **extra}
        return [str(bindir / "ansible-playbook"), name, "-i", "stand-in,", "-e", json.dumps(login)]

    try:
        for _ in range(runs):
            _, by_hand_port = host("by-hand")
            timed("the same installs by hand", [str(standin.REPO / "tests" / "tools" / "benchmark-configure-by-hand.sh"),
                                                str(by_hand_port), str(key)])
            _, port = host("configure")
            timed("fresh configure", playbook(port, "configure.yml"))
            # It writes the GPU check's report on the controller once more (now reused): one module run more.
            timed("first re-run", playbook(port, "configure.yml"))
            for _ in range(runs):
                timed("ping + setup", playbook(port, str(home / "ping-and-setup.yml")))
                timed("no-op configure", playbook(port, "configure.yml"))
            timed("autostop_minutes=90", playbook(port, "configure.yml", autostop_minutes=90))
            timed("an extra package", playbook(port, "configure.yml", autostop_minutes=90,
                                               python_envs_extra_packages=["defusedxml==0.7.1"]))
            for name in containers:
                standin.remove_host(name)
            containers.clear()
    finally:
        for name in containers:
            standin.remove_host(name)
    median = {step: statistics.median(seconds) for step, seconds in timings.items()}
    notes = {
        "fresh configure": f"{median['fresh configure'] / median['the same installs by hand']:4.2f}x the script "
                           "(goal: at most 1.2x)",
        "no-op configure": f"{median['no-op configure'] / median['ping + setup']:4.1f}x ping + setup "
                           "(goals: at most 2x, and 15 s)",
        "first re-run": f"{median['first re-run'] / median['ping + setup']:4.1f}x ping + setup (saves the GPU report once)",
        "autostop_minutes=90": "runs the autostop role only",
        "an extra package": "runs python_envs only",
    }
    for step, seconds in timings.items():
        print(f"{step:28s} median {median[step]:6.2f} s  {notes.get(step, ''):48s}"
              f"  runs: {', '.join(f'{s:.2f}' for s in seconds)}")


if __name__ == "__main__":
    main()
