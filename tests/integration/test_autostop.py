"""The autostop role for real: a stand-in host with sshd and JupyterLab, kept up by work and stopped by its own timer.

The stand-in (scripts/standin.py: a systemd container, sshd published on 127.0.0.1, the test's key
installed) runs the python_envs, jupyter and autostop roles as configure does (pip installs from the
wheelhouse in .cache/pip when it is filled, else from the package index). With auto-stop off, the check is
run once by hand against the real Jupyter: it sees a kernel's activity, and its calls leave Jupyter's own
last_activity where it was. Then with autostop_minutes=1, a check every 10 s, a one-minute warning and
hung_minutes=1, in one sequence, with an `ssh -N -L` Jupyter tunnel open all along and a stand-in browser tab
polling Jupyter's API through it every few seconds:
  (a) a CPU-bound loop in a detached tmux session of the login user keeps the box up past the idle minute;
  (b) a download (curl in the box, from an HTTP server on this machine's 127.0.0.1, through `ssh -R`) does;
  (c) `gpubox-autostop hold 1h`, run over SSH as the login user, keeps an idle box up; `gpubox-autostop status`
      says so;
  (d) `hold off`, with an interactive SSH shell open but not typed in and a kernel blocked on input(): the
      shell gets the warning (wall), the kernel counts as hung after a minute, and the box powers itself off
      (docker reports the container exited);
  (e) its journal holds each decision with its reason, and never the token.
configure.yml -i HOST, (a machine gpubox did not launch) installs auto-stop switched off, unless asked.

Needs Docker and the OpenSSH client; skips (saying why) when something is missing, or fails when
GPUBOX_REQUIRE_INTEGRATION=1. Traffic: SSH to the port published on 127.0.0.1 (and Jupyter through the
tunnel, the download through `ssh -R`, both on 127.0.0.1), the rest through `docker exec`. About 8 minutes.
"""

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from standin import HOST_SETTINGS, IMAGE, LOGIN_USER, REPO
from support.containers import converge as run_playbook
from support.containers import free_port, run, sh, skip, stand_in_host
from support.tunnel import stop

UNIT = "gpubox-autostop"
COMMAND = "/usr/local/bin/gpubox-autostop"
JUPYTER_ENV = "/opt/envs/jupyter"
INTERVAL_S = 10  # autostop_check_interval in this test
WINDOW_S = 60  # autostop_minutes=1, and so the warning (autostop_warn_minutes is at most the idle time)
# Past the idle minute and the warning's minute, by two checks and a margin: an idle box is off by then.
HOLD_S = WINDOW_S + WINDOW_S // 2 + 2 * INTERVAL_S
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
AUTOSTOP_VARS = {"autostop_minutes": 1, "autostop_check_interval": f"{INTERVAL_S}s", "autostop_warn_minutes": 1,
                 "autostop_hung_minutes": 1}
# What a JupyterLab tab asks for again and again, none of it with no_track_activity.
TAB_POLLS = ("/api/kernels", "/api/sessions", "/api/terminals", "/api/kernelspecs", "/api/status")
DOWNLOAD_CHUNK = 32 * 1024  # every 0.1 s: 320 KiB/s, three times the network threshold (100 KiB/s)


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


def ssh(box, *options, command=(), stdin=subprocess.DEVNULL, log="ssh.log"):
    """An SSH client to the stand-in's sshd on 127.0.0.1, in the background, its output in the work folder."""
    with open(box["work"] / log, "a") as out:
        return subprocess.Popen(
            ["ssh", "-i", str(box["work"] / "key"), "-p", str(box["ssh_port"]),
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ServerAliveInterval=5", *options, f"{LOGIN_USER}@127.0.0.1", *command],
            stdin=stdin, stdout=out, stderr=out,
        )


def ssh_run(box, *command):
    """A command over SSH as the login user, to its end: (exit status, output)."""
    (box["work"] / "command.log").write_text("")
    client = ssh(box, "-o", "LogLevel=ERROR", command=command, log="command.log")
    status = client.wait(timeout=60)
    return status, (box["work"] / "command.log").read_text()


def jupyter_api(box, method, path):
    """Call Jupyter's API inside the container with the token from the token file (never on a command line here)."""
    return sh(box["name"], "T=$(sed -n 's/^JUPYTER_TOKEN=//p' /etc/gpubox/jupyter-token);"
                           f" curl -sf -X {method} -H \"Authorization: token $T\" 'http://127.0.0.1:8888{path}'")


def kernel_running(box, code):
    """A new kernel in the real JupyterLab, busy with `code` (sent through jupyter_client, which then lets go).

    `code` goes inside a double-quoted shell word: no double quotes in it."""
    assert '"' not in repr(code)
    kernel = json.loads(jupyter_api(box, "POST", "/api/kernels"))["id"]
    connection = sh(box["name"], f"ls /home/{LOGIN_USER}/.local/share/jupyter/runtime/kernel-{kernel}.json")
    assert connection, "no connection file for the kernel"
    sh(box["name"], f"runuser -u {LOGIN_USER} -- {JUPYTER_ENV}/bin/python -c \""
                    "import sys, time; from jupyter_client import BlockingKernelClient;"
                    " c = BlockingKernelClient(connection_file=sys.argv[1]); c.load_connection_file();"
                    " c.start_channels(); c.wait_for_ready(timeout=60);"
                    f" c.execute({code!r}, allow_stdin=True); time.sleep(2); c.stop_channels()"
                    f"\" {connection}")
    assert wait_for(lambda: json.loads(jupyter_api(box, "GET", f"/api/kernels/{kernel}?no_track_activity=1"))
                    ["execution_state"] == "busy", 20), "the kernel did not become busy"
    return kernel


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


class Endless(http.server.BaseHTTPRequestHandler):
    """Serves an endless body at a steady pace: the download. Paced here, not by curl: a reader that only reads
    slowly lets the SSH channel carry the data in bursts, with quiet minutes between them."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        chunk = os.urandom(DOWNLOAD_CHUNK)
        try:
            while True:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            return

    def log_message(self, *args):
        return


def _unix(text):
    """Unix time from Jupyter's 2026-11-26T10:02:03.123456Z."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def kept_up(box, since, what):
    """Wait until HOLD_S after `since` (a monotonic time), then check the box still runs."""
    time.sleep(max(0.0, since + HOLD_S - time.monotonic()))
    assert state(box) == "running", f"{what} did not keep the box up: {decisions(box)[-8:]}"


def test_zero_minutes_installs_the_command_but_runs_nothing(box):
    assert sh(box["name"], f"systemctl is-enabled {UNIT}.timer") == "disabled"
    assert sh(box["name"], f"systemctl is-active {UNIT}.timer") == "inactive"
    assert sh(box["name"], f"systemctl show -p ExecMainStartTimestampMonotonic --value {UNIT}.service") == "0"
    assert json.loads(sh(box["name"], "cat /etc/gpubox/autostop.json"))["minutes"] == 0
    assert sh(box["name"], "systemctl is-active jupyter") == "active"
    status, said = ssh_run(box, "gpubox-autostop", "status")
    assert status == 0 and "Auto-stop: off (autostop_minutes is 0)." in said, said


def test_the_check_sees_kernels_and_does_not_count_as_jupyter_activity(box):
    """Against the real Jupyter: a kernel's activity is activity, and the check's own calls are not
    (no_track_activity)."""
    sh(box["name"], "echo '{\"minutes\": 60}' > /tmp/sixty.json")
    kernel = json.loads(jupyter_api(box, "POST", "/api/kernels"))["id"]
    try:
        time.sleep(2)
        before = json.loads(jupyter_api(box, "GET", "/api/status"))["last_activity"]  # does not track itself
        line = sh(box["name"], f"{COMMAND} --config /tmp/sixty.json check --dry-run")
        after = json.loads(jupyter_api(box, "GET", "/api/status"))["last_activity"]
    finally:
        jupyter_api(box, "DELETE", f"/api/kernels/{kernel}")
    assert re.fullmatch(r"idle 0 of 60 minutes since the last activity: .*last kernel activity 0 minutes ago.*"
                        r" \(dry run\)", line), line
    assert after == before, "the check's calls counted as Jupyter activity"


def test_work_keeps_the_box_up_and_an_idle_one_is_warned_and_stops(box):
    # Switch autostop on. The idle minute counts from the timer's start, not from the setup before it.
    rc, changed, output = converge(box, AUTOSTOP_ONLY, **AUTOSTOP_VARS)
    assert rc == 0 and changed > 0, output
    assert wait_for(lambda: decisions(box), 2 * INTERVAL_S), "the timer did not run the check"
    # Idle from the start: with a one-minute idle time, the first check already warns (a minute ahead).
    assert re.match(r"warning: stopping at \S+ \(idle\): ", decisions(box)[0]), decisions(box)
    assert box["token"] not in output and box["token"] not in sh(box["name"], "cat /etc/gpubox/autostop.json")
    # A second run changes nothing and does not restart the timer (which would restart the idle count).
    timer_since = sh(box["name"], f"systemctl show -p ActiveEnterTimestampMonotonic --value {UNIT}.timer")
    rc, changed, output = converge(box, AUTOSTOP_ONLY, **AUTOSTOP_VARS)
    assert (rc, changed) == (0, 0), output
    assert sh(box["name"], f"systemctl show -p ActiveEnterTimestampMonotonic --value {UNIT}.timer") == timer_since

    # The Jupyter tunnel a laptop keeps open, with a forgotten JupyterLab tab polling through it.
    tunnel_port, download_port = free_port(), free_port()
    tunnel = ssh(box, "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"{tunnel_port}:127.0.0.1:8888",
                 "-R", f"{download_port}:127.0.0.1:{download_port}")
    tab = BrowserTab(tunnel_port, box["token"])
    tab.start()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", download_port), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shell = None
    try:
        # (a) A training loop in a detached tmux session, started over SSH by the login user, which then logs out.
        status, said = ssh_run(box, "tmux", "new-session", "-d", "-s", "train",
                               "python3 -c 'while True: pass'")
        assert status == 0, said
        started = time.monotonic()
        assert wait_for(lambda: any(re.match(r"active: CPU \d+% >= 10% \(python3\)", line)
                                    for line in decisions(box)), 3 * INTERVAL_S), decisions(box)
        kept_up(box, started, "a CPU-bound job in tmux")
        assert tab.seen, "the tab's polls did not go through the tunnel"
        sh(box["name"], f"runuser -u {LOGIN_USER} -- tmux kill-server")

        # (b) A download, through the tunnel's -R port, by curl run as root from outside any login (docker exec).
        run("docker", "exec", "-d", box["name"], "curl", "-s", "-o", "/dev/null",
            f"http://127.0.0.1:{download_port}/dataset.tar")
        started = time.monotonic()
        downloading = re.compile(r"active: network \d+ KiB/s >= 100 KiB/s, CPU \d+% < 10%")
        assert wait_for(lambda: any(downloading.match(line) for line in decisions(box)), 4 * INTERVAL_S), (
            decisions(box)[-5:])
        kept_up(box, started, "a download")
        assert downloading.match(decisions(box)[-1]), decisions(box)[-3:]
        sh(box["name"], "pkill curl")

        # (c) A hold, run over SSH by the login user (it takes sudo itself): an idle box stays up, and says why.
        status, said = ssh_run(box, "gpubox-autostop", "hold", "1h")
        assert status == 0 and "no idle stop for 1 hour" in said, said
        held_at = time.monotonic()
        status, said = ssh_run(box, "gpubox-autostop", "status")
        assert status == 0 and "Held until " in said and "gpubox-autostop hold off" in said, said
        kept_up(box, held_at, "a hold")
        assert decisions(box)[-1].startswith("held until "), decisions(box)[-3:]
        status, said = ssh_run(box, "gpubox-autostop", "status")
        assert re.search(r"Last check, \d+ minutes? ago: held until ", said), said

        # (d) A terminal left open (no input) and a kernel waiting on input(): neither keeps the box up for long.
        kernel = kernel_running(box, "input()")
        shell = ssh(box, "-tt", stdin=subprocess.PIPE, log="shell.log")
        assert wait_for(lambda: "sshd: " in sh(box["name"], "ps -eo args | grep '@pts/'"), 20), "no shell"
        status, said = ssh_run(box, "gpubox-autostop", "hold", "off")
        assert status == 0 and said.startswith("No hold"), said
        let_go = time.monotonic()
        assert wait_for(lambda: state(box) == "exited", 2 * WINDOW_S + 6 * INTERVAL_S), (state(box), decisions(box))
        took = time.monotonic() - let_go
        assert took >= WINDOW_S - 5, f"stopped after {took:.0f} s, before the idle minute was over"
        # wall wraps its lines at 79 columns: compare without the whitespace.
        shell_said = "".join((box["work"] / "shell.log").read_text(errors="replace").split())
        assert "gpuboxauto-stop:thismachinestopsat" in shell_said, shell_said[-2000:]
        assert "gpubox-autostophold2h" in shell_said, shell_said[-2000:]
        polled_at, status_activity = tab.seen[-1]
        assert abs(polled_at - _unix(status_activity)) < 5, (polled_at, status_activity)  # the tab kept polling
        assert kernel
    finally:
        tab.stopped.set()
        server.shutdown()
        for client in (tunnel, shell):
            if client:
                client.kill()
                client.wait(timeout=10)

    # (e) The journal (persistent, read from the stopped container) holds each decision with its reason.
    journal = box["work"] / "journal"
    run("docker", "cp", f"{box['name']}:/var/log/journal", str(journal))
    read = ["docker", "run", "--rm", "--network", "none", "-v", f"{journal}:/j:ro", IMAGE,
            "journalctl", "-D", "/j", "--no-pager", "-o", "cat"]
    everything = run(*read, check=False).stdout
    assert box["token"] not in everything
    mine = run(*read, f"SYSLOG_IDENTIFIER={UNIT}", check=False).stdout.splitlines()
    warnings = [line for line in mine if line.startswith("warning: stopping at ")]
    assert warnings, mine[-10:]
    last = mine[-1]
    assert last.startswith("stopping: idle for 1 minute ("), mine[-5:]
    assert "1 busy kernel with no CPU or GPU work for 1 minute: counted as hung" in last, last
    assert "1 SSH login" in last and re.search(r"last terminal input \d+ minutes? ago", last), last
    # The tunnel never counted as a login: no line names two, and none before the shell was opened names one.
    assert not any("2 SSH logins" in line for line in mine)
    stop_at = everything.rindex(last)
    assert "Reached target poweroff.target" in everything[stop_at:], everything[stop_at:][-3000:]


# configure.yml's auto-stop part only, as a user changing just that would run it.
CONFIGURE_ONLY_AUTOSTOP = ["--tags", "autostop", "-e", "gpu_required=false"]


def test_a_machine_gpubox_did_not_launch_gets_auto_stop_only_when_asked(tmp_path):
    """configure.yml -i HOST, on a machine of one's own (a workstation, or an instance that terminates on shutdown):
    off unless asked; once asked, later runs keep it; every run says what auto-stop does there."""
    with stand_in_host("gpubox-own", free_port(), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5hbWVub3RoaW5nIHVzZWQgaGVyZQ")\
            as name:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="default",
                   ANSIBLE_NOCOLOR="1")

        def configure(*extra):
            result = subprocess.run(
                [str(Path(sys.executable).parent / "ansible-playbook"), "configure.yml", "-i", f"{name},",
                 "-c", "community.docker.docker", *CONFIGURE_ONLY_AUTOSTOP, *extra],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
            minutes = json.loads(sh(name, "cat /etc/gpubox/autostop.json"))["minutes"]
            return sh(name, f"systemctl is-enabled {UNIT}.timer"), minutes, " ".join(result.stdout.split())

        enabled, minutes, said = configure()
        assert (enabled, minutes) == ("disabled", 0)
        assert f"Auto-stop is off on {name}" in said and "gpubox did not launch it" in said
        enabled, minutes, said = configure("-e", "autostop_minutes=30")
        assert (enabled, minutes) == ("enabled", 30) and f"Auto-stop: {name} stops itself after 30 idle minutes" in said
        enabled, minutes, _ = configure()  # not given again: kept
        assert (enabled, minutes) == ("enabled", 30)
