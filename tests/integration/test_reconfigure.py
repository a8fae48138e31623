"""Re-running configure.yml on a configured host, for real, on a stand-in instance (a systemd container with sshd on
127.0.0.1, configured over SSH as `configure.yml -i host,` does).

- An identical re-run changes nothing and skips each host role whose settings are the same and whose files, services
  and packages read as its last complete run left them (gpubox.box.drift).
- Each kind of drift is still repaired: a stopped service, a changed unit or configuration file, a missing kernel, a
  package removed from an environment, a changed directory mode, a disabled timer; and only the roles that drifted
  run again.
- JupyterLab's environment reinstalled: the jupyter role waits for it, hides its own kernel again and restarts it;
  a run cut short before JupyterLab's restart is followed by one.
- A setting change runs only the role it belongs to.
- The GPU check's report on the controller is left alone by a re-run that would write it again as it is.
- gpubox's state folder, left the login user's (with setgid) by older versions, is made root's again once.
- A login user that needs a password for sudo gets a message that says so.

Needs Docker; skips (saying why) when it is missing, or fails when GPUBOX_REQUIRE_INTEGRATION=1. Traffic: SSH to the
container's port on 127.0.0.1, pip in the container from the wheelhouse in .cache/pip when filled, else the package
index; the rest through `docker exec`. About three and a half minutes.
"""

import json

import pytest

from standin import HOST_SETTINGS
from support.containers import free_port, run, sh, stand_in_host
from support.gpubox import Gpubox

# The task of each gated role that does its work (skipped when the role's evidence shows nothing changed).
SETUP = {
    "data_volume": "Find, format and mount the data volume (or make a directory on the root disk)",
    "python_envs": "Set up the environments",
    "jupyter": "Check the settings, then configure JupyterLab and run it as a systemd service",
    "autostop": "Check the settings, install the idleness check and run it from a timer (or switch it off)",
}
TIMER_UNIT = "/etc/systemd/system/gpubox-autostop.timer"
SERVER_CONFIG = "/opt/envs/jupyter/etc/jupyter/jupyter_server_config.py"
KERNEL = "/usr/local/share/jupyter/kernels/small/kernel.json"
ENV_PYTHON = "/opt/envs/small/bin/python"
# A kernel environment of small wheels (no framework: the GPU check reports it skipped), for a quick first run.
SMALL = [{"name": "small", "packages": ["ipykernel==7.4.0", "six==1.17.0"]}]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    work = tmp_path_factory.mktemp("reconfigure")
    home = work / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_ed25519"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    ssh_port = free_port()
    with stand_in_host("gpubox-reconfigure", ssh_port, (home / ".ssh" / "id_ed25519.pub").read_text().strip()) as host:
        settings = {
            **HOST_SETTINGS, "ansible_host": "127.0.0.1", "ansible_user": "ubuntu", "ansible_port": ssh_port, "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "autostop_minutes": 60, "python_envs": SMALL, "gpu_check_report_dir": str(work / "reports"),
        }
        gpubox = Gpubox(None, home)

        # Not "-i 127.0.0.1,", which Ansible takes for localhost (the controller's tasks would run in the container).
        def configure(**changes):
            return gpubox.run("configure.yml", inventory="stand-in,", timeout=1800, **{**settings, **changes})

        yield {"host": host, "configure": configure, "reports": work / "reports"}


def roles_run(result):
    return {role for role, task in SETUP.items() if result.ran(task)}


def drift_checks(result):
    """Each role's check (gpubox.box.drift state=check) in run order: True when answered from the play's one read of
    the host (gpubox.box.host_gather), False when the module read the host."""
    found = []
    for play in result.output.get("plays", []):
        for task in play.get("tasks", []):
            for answer in task.get("hosts", {}).values():
                if "converged" not in answer or answer.get("skipped"):
                    continue
                if "read" in answer or answer.get("invocation", {}).get("module_args", {}).get("state") == "check":
                    found.append("read" in answer)
    return found


def answers(result, task):
    """The hosts' answers to every task of that name."""
    return [answer for play in result.output.get("plays", []) for found in play.get("tasks", [])
            if found.get("task", {}).get("name", "").split(" : ")[-1] == task for answer in found.get("hosts", {}).values()]


def checksums(host, *paths):
    return sh(host, "sha256sum " + " ".join(paths))


def test_an_identical_rerun_changes_nothing_and_skips_every_unchanged_role(box):
    first = box["configure"]()
    assert first.rc == 0, first.text[-6000:]
    assert roles_run(first) == set(SETUP)
    again = box["configure"]()
    assert again.rc == 0, again.text[-6000:]
    assert again.changed == 0, again.text[-3000:]
    assert roles_run(again) == set()
    # Every role's check was answered on the controller, from the one read of the host at the play's start.
    assert drift_checks(again) == [True] * 5, drift_checks(again)
    # So were the GPU check's facts and JupyterLab's token: no module read the host for them. The read's result (the
    # token among it) is hidden from the output; the URL still carries the host's token.
    gpu = answers(again, "Read the NVIDIA driver and GPU facts, and what the probe's answer depends on")
    assert gpu and all("read" in answer for answer in gpu), gpu
    assert not again.ran("Read the access token")
    read = answers(again, "Log in over SSH, gather the facts and read the host once")
    assert read and all(answer.get("censored") and "secrets" not in answer for answer in read), read
    token = sh(box["host"], "cat /etc/gpubox/jupyter-token").strip().removeprefix("JUPYTER_TOKEN=")
    assert token and again.said("Open:", f"lab?token={token}")
    assert not any(token in json.dumps(task) for play in again.output["plays"] for task in play["tasks"]
                   if task["task"]["name"] != "jupyter : Show the JupyterLab URL")
    assert sh(box["host"], "systemctl is-active jupyter gpubox-autostop.timer").split() == ["active", "active"]
    # The GPU check's report, on the controller: the re-run says it reused the first run's check; a third run that
    # would write the same (its date aside) leaves the file alone.
    report = sorted(box["reports"].glob("stand-in-*.json"))[-1]
    assert json.loads(report.read_text())["reused"] is True
    written = report.read_text()
    third = box["configure"]()
    assert third.rc == 0 and third.changed == 0, third.text[-3000:]
    if sorted(box["reports"].glob("stand-in-*.json"))[-1] == report:  # the same UTC day (a new day, a new file)
        assert report.read_text() == written and not third.ran("Save the report as JSON on the controller")


def test_a_stopped_service_is_started_again_and_only_its_role_runs(box):
    host = box["host"]
    sh(host, "systemctl stop jupyter")
    repaired = box["configure"]()
    assert repaired.rc == 0, repaired.text[-6000:]
    assert roles_run(repaired) == {"jupyter"}
    assert repaired.changed > 0
    # The read answers until jupyter's check finds the stopped service; the check after it reads the host again.
    assert drift_checks(repaired) == [True, True, True, True, False], drift_checks(repaired)
    assert sh(host, "systemctl is-active jupyter") == "active"


def test_every_kind_of_drift_is_repaired(box):
    host = box["host"]
    before = checksums(host, TIMER_UNIT, SERVER_CONFIG, KERNEL)
    sh(host, f"echo '# edited by hand' >> {TIMER_UNIT} && systemctl daemon-reload")    # a changed unit file
    sh(host, f"echo 'c.ServerApp.ip = \"0.0.0.0\"' >> {SERVER_CONFIG}")                 # a changed config file
    sh(host, f"rm -rf {KERNEL.rsplit('/', 1)[0]}")                                       # a missing kernel
    sh(host, f"{ENV_PYTHON} -m pip uninstall --yes --quiet six")                  # a removed package
    sh(host, "chmod 0700 /data")                                                         # a changed directory mode
    sh(host, "systemctl disable --now gpubox-autostop.timer")                            # a disabled timer
    assert sh(host, f"{ENV_PYTHON} -c 'import six' 2>&1 || echo missing").endswith("missing")

    repaired = box["configure"]()
    assert repaired.rc == 0, repaired.text[-6000:]
    assert roles_run(repaired) == set(SETUP)
    assert checksums(host, TIMER_UNIT, SERVER_CONFIG, KERNEL) == before
    assert sh(host, f"{ENV_PYTHON} -c 'import six; print(six.__version__)'") == "1.17.0"
    assert sh(host, "stat -c %a /data") == "755"
    assert sh(host, "systemctl is-enabled gpubox-autostop.timer; systemctl is-active gpubox-autostop.timer").split() == \
        ["enabled", "active"]
    assert sh(host, "ss -Hltn 'sport = :8888' | awk '{print $4}'") == "127.0.0.1:8888"  # the edited ip is gone

    settled = box["configure"]()
    assert settled.rc == 0 and settled.changed == 0 and roles_run(settled) == set(), settled.text[-3000:]


def test_jupyterlab_waits_for_its_environment_and_hides_its_kernel_again(box):
    host = box["host"]
    jupyter_python = "/opt/envs/jupyter/bin/python"
    own_kernel = "/opt/envs/jupyter/share/jupyter/kernels/python3"
    started = sh(host, "systemctl show --property=InvocationID --value jupyter")
    sh(host, f"{jupyter_python} -m pip uninstall --yes --quiet ipykernel")
    repaired = box["configure"]()
    assert repaired.rc == 0, repaired.text[-6000:]
    # pip brings back ipykernel, and with it the kernel of JupyterLab's own environment, which the jupyter role hides;
    # JupyterLab restarts to load what pip installed.
    assert {"python_envs", "jupyter"} <= roles_run(repaired)
    assert sh(host, f"{jupyter_python} -c 'import ipykernel' && echo imported") == "imported"
    assert sh(host, f"test -e {own_kernel} && echo present || echo absent") == "absent"
    assert sh(host, "systemctl is-active jupyter") == "active"
    assert sh(host, "systemctl show --property=InvocationID --value jupyter") != started


def test_a_run_cut_short_before_the_restart_is_followed_by_one(box):
    host = box["host"]
    started = sh(host, "systemctl show --property=InvocationID --value jupyter")
    # What a run stopped after writing the server configuration and before restarting JupyterLab leaves: no record of
    # a complete run, and a configuration newer than the running server.
    sh(host, f"sleep 1 && touch {SERVER_CONFIG} && rm /var/lib/gpubox/drift/jupyter-jupyter.json")
    repaired = box["configure"]()
    assert repaired.rc == 0, repaired.text[-6000:]
    assert roles_run(repaired) == {"jupyter"}
    assert sh(host, "systemctl show --property=InvocationID --value jupyter") != started
    settled = box["configure"]()
    assert settled.rc == 0 and settled.changed == 0, settled.text[-3000:]


def test_a_setting_change_runs_only_the_role_it_belongs_to(box):
    host = box["host"]
    tuned = box["configure"](autostop_minutes=90)
    assert tuned.rc == 0, tuned.text[-6000:]
    assert roles_run(tuned) == {"autostop"}
    assert json.loads(sh(host, "cat /etc/gpubox/autostop.json"))["minutes"] == 90

    extra = box["configure"](autostop_minutes=90, python_envs_extra_packages=["defusedxml==0.7.1"])
    assert extra.rc == 0, extra.text[-6000:]
    assert "autostop" not in roles_run(extra) and "python_envs" in roles_run(extra)
    assert sh(host, f"{ENV_PYTHON} -c 'import defusedxml; print(defusedxml.__version__)'") == "0.7.1"


def test_gpubox_state_folder_left_the_login_users_is_made_roots_again(box):
    host = box["host"]
    sh(host, "chown ubuntu:ubuntu /var/lib/gpubox && chmod 2775 /var/lib/gpubox")  # as older versions left it, setgid
    fixed = box["configure"]()
    assert fixed.rc == 0 and fixed.changed >= 1, fixed.text[-6000:]
    assert sh(host, "stat -c %u:%g:%a /var/lib/gpubox") == "0:0:755"
    settled = box["configure"]()
    assert settled.rc == 0 and settled.changed == 0, settled.text[-3000:]


def test_a_login_user_without_passwordless_sudo_gets_a_message_that_says_so(box):
    host = box["host"]
    sh(host, "echo 'ubuntu ALL=(ALL) ALL' > /etc/sudoers.d/99-password && chmod 0440 /etc/sudoers.d/99-password")
    try:
        refused = box["configure"]()
    finally:
        sh(host, "rm -f /etc/sudoers.d/99-password")
    assert refused.rc != 0
    assert "let Ansible log in as ubuntu, but running its modules there failed" in refused.text
    assert "sudo without a password" in refused.text
