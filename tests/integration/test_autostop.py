"""The autostop role for real: a stand-in host with sshd and JupyterLab, stopped by its own timer.

The stand-in (scripts/standin.py: a systemd container, sshd published on 127.0.0.1, the test's key
installed) runs the python_envs, jupyter and autostop roles as configure does (pip installs from the
wheelhouse in .cache/pip when it is filled, else from the package index). With autostop off, the
check is run once by hand against the real Jupyter: it sees a terminal's activity, and its calls leave Jupyter's own last_activity where it was.
Then with autostop_minutes=1 and a check every 10 s, in one sequence, with an `ssh -N -L` Jupyter
tunnel open all along and a stand-in browser tab polling Jupyter's API through it every few seconds:
  (a) an SSH login running a command (`ssh box sleep 600`) keeps the box up past the idle minute;
  (b) a busy Jupyter kernel (time.sleep in a real kernel) keeps it up after that login has ended;
  (c) once the kernel is interrupted, the tunnel and the polling tab alone do not keep it up: it
      powers itself off (docker reports the container exited) after the idle minute;
  (d) its journal holds each decision with its reason, and never the token.

Needs Docker and the OpenSSH client; skips (saying why) when something is missing, or fails when
GPUBOX_REQUIRE_INTEGRATION=1. Traffic: SSH to the port published on 127.0.0.1 (and Jupyter through
the tunnel, on 127.0.0.1), the rest through `docker exec` (the community.docker.docker connection).
Takes about 5 minutes.
"""

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from datetime import datetime

import pytest

from standin import HOST_SETTINGS, IMAGE, LOGIN_USER
from support.containers import converge as run_playbook
from support.containers import free_port, run, sh, skip, stand_in_host
from support.tunnel import stop

UNIT = "gpubox-autostop"
CHECK = "/usr/local/sbin/gpubox-autostop"
JUPYTER_ENV = "/opt/envs/jupyter"
INTERVAL_S = 10  # autostop_check_interval in this test
WINDOW_S = 60  # autostop_minutes=1
# Past the idle minute by two checks and a margin for the timer.
HOLD_S = WINDOW_S + 2 * INTERVAL_S + 5
STACK = """---
- name: Run python_envs, jupyter and autostop as configure does
  hosts: all
  become: true
  gather_facts: true  # python_envs's defaults need the architecture
  roles:
    - role: python_envs
    - role: jupyter
    - role: autostop
"""
AUTOSTOP_ONLY = """---
- name: Run the autostop role
  hosts: all
  become: true
  gather_facts: false
  roles:
    - role: autostop
"""
STACK_VARS = {
    **HOST_SETTINGS,
    # The cheapest kernel there is: ipykernel alone.
    "python_envs": [{"name": "kernel", "display_name": "Python 3 (test)", "packages": ["ipykernel==7.4.0"]}],
    "jupyter_show_url": False,
}
AUTOSTOP_VARS = {"autostop_minutes": 1, "autostop_check_interval": f"{INTERVAL_S}s"}
NO_SESSION = r"no SSH session \(tunnels alone do not count\), no GPU reading"
# Established TCP connections to the container's port 22 (0x0016), IPv4 and IPv6: what the old rule counted.
ESTABLISHED_ON_22 = "awk '$4 == \"01\" && $2 ~ /:0016$/' /proc/net/tcp /proc/net/tcp6 | wc -l"
# What a JupyterLab tab asks for again and again, none of it with no_track_activity.
TAB_POLLS = ("/api/kernels", "/api/sessions", "/api/terminals", "/api/kernelspecs", "/api/status")


def state(box):
    return run("docker", "inspect", "-f", "{{.State.Status}}", box["name"], check=False).stdout.strip()


def wait_for(predicate, timeout, step=2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def decisions(box):
    """The check's own journal lines (its decisions), from the running container."""
    out = sh(box["name"], f"journalctl --no-pager -o cat SYSLOG_IDENTIFIER={UNIT}")
    return [line for line in out.splitlines() if line.strip()]


def converge(box, playbook, **variables):
    """Run a playbook in the container as the login user; STACK_VARS go in the inventory, as group_vars would
    (an -e python_envs would also override the environment that the jupyter role asks python_envs for)."""
    return run_playbook(box["work"], box["name"], playbook, {"ansible_user": LOGIN_USER, **STACK_VARS}, **variables)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A stand-in host with sshd on a loopback port, JupyterLab, and autostop installed but off (0 minutes)."""
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        skip("the OpenSSH client (ssh, ssh-keygen) is needed")
    work = tmp_path_factory.mktemp("autostop")
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "key"))
    ssh_port = free_port()
    with stand_in_host("gpubox-autostop", ssh_port, (work / "key.pub").read_text().strip()) as name:
        box = {"name": name, "work": work, "ssh_port": ssh_port}
        # apt's package lists count as fresh (the image has python3-venv already); pip installs from the
        # wheelhouse when molecule's prepare has filled it, else from the package index (a fresh CI machine).
        sh(name, "mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/update-success-stamp")
        rc, _, output = converge(box, STACK, autostop_minutes=0, autostop_check_interval=f"{INTERVAL_S}s")
        assert rc == 0, output[-5000:]
        box["token"] = sh(name, "sed -n 's/^JUPYTER_TOKEN=//p' /etc/gpubox/jupyter-token")
        assert len(box["token"]) >= 32
        yield box


def ssh(box, *options, command=()):
    """An SSH client to the stand-in's sshd on 127.0.0.1, in the background, its output in the work folder."""
    with open(box["work"] / "ssh.log", "a") as log:
        return subprocess.Popen(
            ["ssh", "-i", str(box["work"] / "key"), "-p", str(box["ssh_port"]),
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ServerAliveInterval=5", *options, f"{LOGIN_USER}@127.0.0.1", *command],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )


def jupyter_api(box, method, path):
    """Call Jupyter's API inside the container with the token from the token file (never on a command line here)."""
    return sh(box["name"], "T=$(sed -n 's/^JUPYTER_TOKEN=//p' /etc/gpubox/jupyter-token);"
                           f" curl -sf -X {method} -H \"Authorization: token $T\" 'http://127.0.0.1:8888{path}'")


class BrowserTab(threading.Thread):
    """A forgotten JupyterLab tab: polls Jupyter's API through the SSH tunnel every few seconds, as the tab does.

    Keeps (when, /api/status's last_activity) for each poll that went through.
    """

    def __init__(self, port, token):
        super().__init__(daemon=True)
        self.port, self.token, self.seen, self.stopped = port, token, [], threading.Event()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy

    def run(self):
        while not self.stopped.wait(3):
            try:
                for path in TAB_POLLS:
                    request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                                     headers={"Authorization": f"token {self.token}"})
                    with self.opener.open(request, timeout=5) as response:
                        body = json.loads(response.read())
                self.seen.append((time.time(), body["last_activity"]))
            except (OSError, ValueError, KeyError):
                continue


def _unix(text):
    """Unix time from Jupyter's 2026-11-26T10:02:03.123456Z."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_zero_minutes_installs_the_timer_but_runs_nothing(box):
    assert sh(box["name"], f"systemctl is-enabled {UNIT}.timer") == "disabled"
    assert sh(box["name"], f"systemctl is-active {UNIT}.timer") == "inactive"
    assert sh(box["name"], f"systemctl show -p ExecMainStartTimestampMonotonic --value {UNIT}.service") == "0"
    assert "--minutes 0 " in sh(box["name"], f"systemctl cat {UNIT}.service")
    assert sh(box["name"], "systemctl is-active jupyter") == "active"


def test_the_check_sees_terminals_and_does_not_count_as_jupyter_activity(box):
    """Against the real Jupyter: a terminal is activity, and the check's own calls are not (no_track_activity)."""
    terminal = json.loads(jupyter_api(box, "POST", "/api/terminals"))["name"]
    try:
        time.sleep(2)
        before = json.loads(jupyter_api(box, "GET", "/api/status"))["last_activity"]  # does not track itself
        line = sh(box["name"], f"{CHECK} --minutes 60 --dry-run")
        after = json.loads(jupyter_api(box, "GET", "/api/status"))["last_activity"]
    finally:
        jupyter_api(box, "DELETE", f"/api/terminals/{terminal}")
    assert re.fullmatch(rf"idle 0 of 60 minutes since the last activity: no busy kernel, last kernel or terminal "
                        rf"activity 0 minutes ago, {NO_SESSION} \(dry run\)", line), line
    assert after == before, "the check's calls counted as Jupyter activity"


def test_busy_box_stays_up_and_idle_box_stops_itself(box):
    # Switch autostop on. The idle minute counts from the timer's start, not from the setup before it (nor from
    # JupyterLab's start, which came later than the system's): the first check, with nothing going on, says so.
    rc, changed, output = converge(box, AUTOSTOP_ONLY, **AUTOSTOP_VARS)
    switched_on = time.monotonic()
    assert rc == 0 and changed > 0, output
    assert wait_for(lambda: decisions(box), 2 * INTERVAL_S), "the timer did not run the check"
    assert re.fullmatch(rf"idle 0 of 1 minute since start-up: no busy kernel, {NO_SESSION}", decisions(box)[0]), (
        decisions(box))
    first_checks = len(decisions(box))
    # The Jupyter tunnel a laptop keeps open, with a forgotten JupyterLab tab polling through it, and a login.
    tunnel_port = free_port()
    tunnel = ssh(box, "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"{tunnel_port}:127.0.0.1:8888")
    tab = BrowserTab(tunnel_port, box["token"])
    tab.start()
    login = ssh(box, command=["sleep", "600"])
    try:
        # Nothing that holds the token: not the units, not Ansible's output.
        units = sh(box["name"], f"cat /etc/systemd/system/{UNIT}.service /etc/systemd/system/{UNIT}.timer")
        assert "--minutes 1 " in units and "--token-file /etc/gpubox/jupyter-token" in units
        assert box["token"] not in units and box["token"] not in output
        assert sh(box["name"], f"systemctl is-enabled {UNIT}.timer; systemctl is-active {UNIT}.timer").split() == [
            "enabled", "active"]
        timer_since = sh(box["name"], f"systemctl show -p ActiveEnterTimestampMonotonic --value {UNIT}.timer")

        # A second run changes nothing and does not restart the timer (which would restart the idle count).
        rc, changed, output = converge(box, AUTOSTOP_ONLY, **AUTOSTOP_VARS)
        assert (rc, changed) == (0, 0), output
        assert sh(box["name"], f"systemctl show -p ActiveEnterTimestampMonotonic --value {UNIT}.timer") == timer_since

        # (a) The login running a command keeps it up past the idle minute; the tunnel beside it is not a session.
        assert wait_for(lambda: "active: 1 SSH session" in decisions(box), 3 * INTERVAL_S), (
            decisions(box), (box["work"] / "ssh.log").read_text())
        assert sh(box["name"], ESTABLISHED_ON_22) == "2"  # both connections are up
        assert tab.seen, "the tab's polls did not go through the tunnel"
        time.sleep(max(0.0, switched_on + HOLD_S - time.monotonic()))
        assert state(box) == "running"
        lines = decisions(box)[first_checks:]
        assert len(lines) >= WINDOW_S // INTERVAL_S - 2, lines
        assert set(lines) - {"active: 1 SSH session"} <= set(lines[:1]), lines  # the first may predate the login
        assert sh(box["name"], "cat /var/lib/gpubox/autostop/last-active")  # the last activity is remembered

        # (b) A busy kernel in the real JupyterLab keeps it up once the login has ended.
        kernel = json.loads(jupyter_api(box, "POST", "/api/kernels"))["id"]
        connection = sh(box["name"], f"ls /home/{LOGIN_USER}/.local/share/jupyter/runtime/kernel-{kernel}.json")
        assert connection, "no connection file for the kernel"
        sh(box["name"], f"runuser -u {LOGIN_USER} -- {JUPYTER_ENV}/bin/python -c \""
                        "import sys, time; from jupyter_client import BlockingKernelClient;"
                        " c = BlockingKernelClient(connection_file=sys.argv[1]); c.load_connection_file();"
                        " c.start_channels(); c.wait_for_ready(timeout=60);"
                        " c.execute('import time; time.sleep(600)'); time.sleep(2); c.stop_channels()"
                        f"\" {connection}")
        assert wait_for(lambda: json.loads(jupyter_api(box, "GET", f"/api/kernels/{kernel}?no_track_activity=1"))
                        ["execution_state"] == "busy", 20), "the kernel did not become busy"
        stop(login)
        # sshd ends the login (its command, without a terminal, lives on, reparented: it is no session).
        assert wait_for(lambda: sh(box["name"], "pgrep -f '^sshd: [^ ]+@'") == "", 20), "the login did not end"
        login_ended = time.monotonic()
        seen = len(decisions(box))
        assert wait_for(lambda: decisions(box)[-1] == "active: 1 busy kernel", 3 * INTERVAL_S), decisions(box)
        time.sleep(max(0.0, login_ended + HOLD_S - time.monotonic()))
        assert state(box) == "running"
        later = decisions(box)[seen:]
        assert len(later) >= WINDOW_S // INTERVAL_S, later
        assert set(later) - {"active: 1 busy kernel"} <= set(later[:1]), later  # the first may predate the logout
        assert json.loads(jupyter_api(box, "GET", f"/api/kernels/{kernel}?no_track_activity=1"))[
            "execution_state"] == "busy"
        assert sh(box["name"], ESTABLISHED_ON_22) == "1" and tunnel.poll() is None, "the tunnel is not open"

        # (c) Only the tunnel and the polling tab: interrupt the kernel and let go. It powers itself off after the
        # idle minute, though Jupyter's own last_activity (/api/status) kept moving with the tab's polls.
        jupyter_api(box, "POST", f"/api/kernels/{kernel}/interrupt")
        let_go, let_go_at = time.monotonic(), time.time()
        assert wait_for(lambda: state(box) == "exited", WINDOW_S + 6 * INTERVAL_S), (state(box), decisions(box))
        took = time.monotonic() - let_go
        assert took >= WINDOW_S - 5, f"stopped after {took:.0f} s, before the idle minute was over"
        polled_at, status_activity = tab.seen[-1]
        assert polled_at >= let_go_at + WINDOW_S - 10, "the tab stopped polling before the idle minute was over"
        assert abs(polled_at - _unix(status_activity)) < 5, (polled_at, status_activity)
    finally:
        tab.stopped.set()
        for client in (login, tunnel):
            client.kill()
            client.wait(timeout=10)

    # (d) The journal (persistent, read from the stopped container) holds each decision with its reason.
    journal = box["work"] / "journal"
    run("docker", "cp", f"{box['name']}:/var/log/journal", str(journal))
    read = ["docker", "run", "--rm", "--network", "none", "-v", f"{journal}:/j:ro", IMAGE,
            "journalctl", "-D", "/j", "--no-pager", "-o", "cat"]
    everything = run(*read, check=False).stdout
    assert box["token"] not in everything
    mine = run(*read, f"SYSLOG_IDENTIFIER={UNIT}", check=False).stdout.splitlines()
    assert "active: 1 SSH session" in mine
    assert "active: 1 busy kernel" in mine
    # The tunnel never counted: never 2 SSH sessions, never an SSH session once the login had ended.
    active = {line for line in mine if line.startswith("active: ")}
    assert active <= {"active: 1 SSH session", "active: 1 busy kernel", "active: 1 busy kernel, 1 SSH session"}, active
    first_active = next(i for i, line in enumerate(mine) if line.startswith("active: "))
    assert mine[:first_active] and all(line.startswith("idle 0 of 1 minute since start-up: ")
                                       for line in mine[:first_active]), mine[:first_active]
    idle = [line for line in mine[first_active:] if line.startswith("idle ")]
    assert idle, mine
    assert all(re.fullmatch(
        rf"idle 0 of 1 minute since the last activity: no busy kernel, last kernel or terminal activity 0 minutes "
        rf"ago, {NO_SESSION}", line) for line in idle), idle
    assert re.fullmatch(
        rf"stopping: idle for 1 minute \(no busy kernel, last kernel or terminal activity 1 minute ago, {NO_SESSION}\)",
        mine[-1]), mine[-5:]
    stop_at = everything.rindex(mine[-1])
    assert "Reached target poweroff.target" in everything[stop_at:], everything[stop_at:][-3000:]
