"""`make demo` on a machine without an AWS account: it ends with a tunnel command that works, and demo-down
leaves nothing behind. Runs scripts/demo.py as `make demo` does (the stand-ins: moto server on 127.0.0.1,
a systemd container with sshd published on 127.0.0.1)."""

import json
import re
import shlex
import subprocess
import sys
import urllib.request

from standin import REPO, free_port
from support.containers import docker_ready, run
from support.tunnel import background, jupyter_answers

DEMO = [sys.executable, str(REPO / "scripts" / "demo.py")]


def test_demo_ends_with_a_tunnel_command_that_works_and_demo_down_removes_everything():
    docker_ready()
    tunnel_port = free_port()
    # Results as JSON lines, so the closing message's lines are not wrapped.
    env = {"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root",
           "TUNNEL_PORT": str(tunnel_port), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1",
           # A profile of the user's own must not leak into the demo.
           "AWS_PROFILE": "someone-elses-profile"}
    try:
        up = subprocess.run([*DEMO, "up"], env=env, capture_output=True, text=True, timeout=1800)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
        [tunnel] = re.findall(r'"1\. Open the tunnel and leave it running:  (ssh [^"]+)"', up.stdout)
        [url] = re.findall(r'"2\. Open JupyterLab:  (http://127\.0\.0\.1:\d+/lab\?token=\w+)"', up.stdout)
        # The emulator's box is removed with demo-down, never stop.yml or teardown.yml (autostop.yml works there).
        assert "make demo-down" in up.stdout and not re.search(r"\b(stop|teardown)\.yml", up.stdout)
        with background(shlex.split(tunnel)) as proc:
            assert jupyter_answers(url.replace("/lab?", "/api/status?"), proc) == 200
        state = json.loads((REPO / ".demo" / "state.json").read_text())
    finally:
        down = subprocess.run([*DEMO, "down"], env=env, capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stderr[-2000:]
    assert not (REPO / ".demo").exists()
    assert run("docker", "inspect", "gpubox-demo", check=False).returncode != 0
    try:
        urllib.request.urlopen(state["moto_url"] + "/moto-api/", timeout=2)
        raise AssertionError("moto server still answers after demo-down")
    except OSError:
        pass
