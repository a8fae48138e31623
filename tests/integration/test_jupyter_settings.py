"""JupyterLab stays on loopback unless remote access is asked for: the role's preflight, really run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def preflight(tmp_path, **settings):
    play = [{
        "name": "Run the jupyter role's preflight",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{"name": "Check the settings", "ansible.builtin.include_role": {"name": "jupyter", "tasks_from": "preflight"}}],
    }]
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(json.dumps(play))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    settings = {"jupyter_user": "nobody", "ansible_python_interpreter": sys.executable, **settings}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook),
                           "-e", json.dumps(settings)], env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.0.0.5"])
def test_non_loopback_address_is_refused(tmp_path, address):
    rc, out = preflight(tmp_path, jupyter_ip=address)
    assert rc != 0
    assert f"jupyter_ip is {address}, which is not loopback" in out
    assert "jupyter_allow_remote=true" in out


def test_non_loopback_address_when_remote_access_is_allowed(tmp_path):
    rc, out = preflight(tmp_path, jupyter_ip="0.0.0.0", jupyter_allow_remote=True)
    assert rc == 0, out


def test_loopback_is_the_default(tmp_path):
    rc, out = preflight(tmp_path)
    assert rc == 0, out
