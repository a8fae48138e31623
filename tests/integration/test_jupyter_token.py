"""The Jupyter token belongs to one machine: a box launched from an image baked of another box gets a new one.

Runs the jupyter role's token tasks for real on this machine, in a temporary directory, with a handler of the same
name standing in for the service's restart.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the token files are root's (0600), as on a box")


def configure(tmp_path, instance, previous=None):
    """Run roles/jupyter/tasks/token.yml as configure would for the machine `instance`: (token, restarted).

    previous: what cloud-init's previous-instance-id says (None: the file does not exist). The cookie secret is a file
    in tmp_path, as Jupyter Server keeps it in the service user's runtime directory."""
    cloud = tmp_path / "previous-instance-id"
    if previous is None:
        cloud.unlink(missing_ok=True)
    else:
        cloud.write_text(previous + "\n")
    play = [{
        "name": "Make the Jupyter token",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"jupyter_token_file": str(tmp_path / "jupyter-token"), "jupyter_token_instance": instance,
                 "jupyter_previous_instance_file": str(cloud),
                 "jupyter_cookie_secret_file": str(tmp_path / "jupyter_cookie_secret")},
        "tasks": [{"name": "Make the token", "ansible.builtin.import_tasks": str(REPO / "roles/jupyter/tasks/token.yml")}],
        "handlers": [{"name": "Restart JupyterLab", "ansible.builtin.debug": {"msg": "restarted"}}],
    }]
    playbook = tmp_path / "token.yml"
    playbook.write_text(json.dumps(play))
    # Run outside the project: its ansible.cfg loads inventories and collections these tasks do not need.
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook),
                           "-e", json.dumps({"ansible_python_interpreter": sys.executable})],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    restarted = '"msg": "restarted"' in proc.stdout
    assert "JUPYTER_TOKEN=" not in proc.stdout  # no_log
    return (tmp_path / "jupyter-token").read_text(), restarted


def cookie_secret(tmp_path):
    """JupyterLab's cookie secret, as the service left it after a login."""
    secret = tmp_path / "jupyter_cookie_secret"
    secret.write_text("secret of the box the disk came from\n")
    return secret


def test_a_token_is_kept_on_its_machine_and_replaced_on_another(tmp_path):
    token, restarted = configure(tmp_path, "i-source")
    assert token.startswith("JUPYTER_TOKEN=") and len(token.strip()) == len("JUPYTER_TOKEN=") + 48 and restarted
    assert oct((tmp_path / "jupyter-token").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "jupyter-token.instance").read_text().strip() == "i-source"

    # configure again on the same box: the same token, no restart (open sessions keep working), the cookie secret kept.
    secret = cookie_secret(tmp_path)
    assert configure(tmp_path, "i-source") == (token, False)
    assert secret.exists()

    # The same disk on another instance (a box launched from an image of the first): a new token, a restart, and the
    # cookie secret gone, so that a login cookie of the first box no longer opens this one.
    fresh, restarted = configure(tmp_path, "i-baked")
    assert fresh != token and restarted
    assert (tmp_path / "jupyter-token.instance").read_text().strip() == "i-baked"
    assert not secret.exists()


def test_a_machine_of_your_own_keeps_its_token_whatever_it_is(tmp_path):
    # -i host,: configure passes no instance id. The token is kept, and no record is written.
    token, _ = configure(tmp_path, "")
    secret = cookie_secret(tmp_path)
    assert configure(tmp_path, "", previous="i-elsewhere") == (token, False)
    assert not (tmp_path / "jupyter-token.instance").exists() and secret.exists()


@pytest.mark.parametrize("case, previous, replaced", [
    ("cloud-init has no previous instance", None, False),
    ("cloud-init's previous instance is this one", "i-box", False),
    ("the disk booted on another instance before", "i-source", True),
])
def test_a_token_without_a_record_is_kept_unless_the_disk_came_from_another_instance(tmp_path, case, previous,
                                                                                    replaced):
    # A box configured before the record was written: its token exists, and nothing says which machine it is for.
    token, _ = configure(tmp_path, "")
    secret = cookie_secret(tmp_path)
    again, restarted = configure(tmp_path, "i-box", previous=previous)
    assert (again != token, restarted, not secret.exists()) == (replaced, replaced, replaced), case
    assert (tmp_path / "jupyter-token.instance").read_text().strip() == "i-box", case
    # Recorded now: the next configure keeps it, whatever cloud-init says.
    assert configure(tmp_path, "i-box", previous="i-source") == (again, False), case
