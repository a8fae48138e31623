#!/usr/bin/env python3
"""`make demo`: the whole launch flow without an AWS account, ending with a tunnel command that works.

moto server on 127.0.0.1 plays AWS and a systemd container plays the EC2 instance (scripts/standin.py).
launch.yml runs as for real: it provisions in moto, then configures the container over SSH (Python env
with TensorFlow, JupyterLab, auto-stop) and prints the tunnel command and the JupyterLab URL.
Everything lives in .demo/ (its own SSH key, SSH config and known hosts, moto's address); your ~/.ssh
and your AWS settings are not used or changed. `make demo-down` removes it all.

    scripts/demo.py up     start (or re-run) the demo
    scripts/demo.py down   tear it down
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import standin

STATE = standin.REPO / ".demo"
NAME = "demo"
CONTAINER = "gpubox-demo"
# The box's SSH config and known hosts stay in .demo/ too, for launch and teardown alike.
SSH_CONFIG = {"ssh_config_dir": str(STATE / "ssh"), "ssh_config_main": str(STATE / "ssh" / "config")}


def _env(moto_url):
    # None of the user's AWS settings (profile, session token, endpoints) may reach the playbooks.
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": "us-east-1",
        # Any key works with moto. Not "demo": Ansible masks a secret's value wherever it appears in results,
        # and the box's name in every tag would come back masked.
        "AWS_ACCESS_KEY_ID": "AKIAGPUBOXDEMO000000",
        "AWS_SECRET_ACCESS_KEY": "gpubox-demo-moto-secret-not-a-real-key",
        # Never read the user's AWS profile or the instance metadata: the demo talks to moto only.
        "AWS_CONFIG_FILE": str(STATE / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(STATE / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _playbook(playbook, moto_url, settings):
    ansible = Path(sys.executable).parent / "ansible-playbook"
    cmd = [str(ansible), playbook, "-e", json.dumps(settings)]
    return subprocess.run(cmd, cwd=standin.REPO, env=_env(moto_url)).returncode


def _moto_alive(state):
    """True when the saved process id is still our moto server (after a reboot it may be another process)."""
    try:
        cmdline = Path(f"/proc/{state['moto_pid']}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    port = state["moto_url"].rsplit(":", 1)[1].encode()
    return any(b"moto_server" in arg for arg in cmdline) and port in cmdline


def _running(state):
    alive = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", CONTAINER],
                           capture_output=True, text=True).stdout.strip() == "true"
    return alive and _moto_alive(state)


def up():
    STATE.mkdir(exist_ok=True)
    state_file = STATE / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    if state and not _running(state):
        print("demo: the previous demo is gone (machine restarted?): starting a fresh one", file=sys.stderr)
        down(quiet=True)
        STATE.mkdir(exist_ok=True)
        state = None
    if state is None:
        standin.prepare_docker()
        key = STATE / "id_ed25519"
        if not key.exists():
            standin.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpubox-demo", "-f", str(key))
        moto_port, ssh_port = standin.free_port(), standin.free_port()
        print(f"demo: moto server (AWS) on 127.0.0.1:{moto_port}, stand-in instance {CONTAINER} "
              f"with SSH on 127.0.0.1:{ssh_port}", file=sys.stderr)
        moto = standin.start_moto(moto_port)
        standin.remove_host(CONTAINER)
        standin.start_host(CONTAINER, ssh_port, (STATE / "id_ed25519.pub").read_text().strip())
        state = {"moto_url": f"http://127.0.0.1:{moto_port}", "moto_pid": moto.pid, "ssh_port": ssh_port}
        state_file.write_text(json.dumps(state))
    settings = {
        "name": NAME, "type": "g5.xlarge", "ami": standin.MOTO_UBUNTU_AMI,
        "ssh_public_key": str(STATE / "id_ed25519.pub"), "ssh_cidr": "127.0.0.1/32",
        "ssh_host": "127.0.0.1", "ssh_port": state["ssh_port"],
        "tunnel_port": int(os.environ.get("TUNNEL_PORT", "8888")),
        # The container has no second disk.
        "data_volume_size": 0,
        **SSH_CONFIG,
        # Its stop and teardown commands would talk to your real AWS account: point to make demo-down instead.
        "summary_manage": ["This box lives in the emulator: `make demo-down` removes it."],
        **standin.HOST_SETTINGS,
    }
    rc = _playbook("launch.yml", state["moto_url"], settings)
    if rc == 0:
        print("\ndemo: run the tunnel command above in another terminal, then open the URL in your browser."
              "\ndemo: `make demo` again re-runs launch (nothing changes); `make demo-down` removes everything.")
    return rc


def down(quiet=False):
    state_file = STATE / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _running(state):
            settings = {"name": NAME, "confirm": True, "delete_data": True, **SSH_CONFIG}
            if _playbook("teardown.yml", state["moto_url"], settings) != 0:
                print("demo: teardown in the emulator failed (see above); removing the stand-ins anyway", file=sys.stderr)
        if _moto_alive(state):
            os.kill(state["moto_pid"], 15)
    standin.remove_host(CONTAINER)
    if STATE.exists():
        shutil.rmtree(STATE)
    if not quiet:
        print("demo: removed the stand-in instance, moto server and .demo/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("up", "down"):
        sys.exit(__doc__)
    sys.exit(up() if sys.argv[1] == "up" else down())
