"""Unit tests for the autostop role's check (roles/autostop/files/gpubox-autostop.py).

The decision is driven with fake clocks and readings; the SSH count with process tables as OpenSSH
9.2 and 9.8 leave them, and the readers with a fake /proc; the Jupyter reader against a tiny HTTP
server on 127.0.0.1 that checks the token and no_track_activity and refuses /api/status; the GPU
reader against a fake nvidia-smi. tests/integration/test_autostop.py runs it for real under systemd.

Run from the repository root: python -m pytest tests/unit/test_autostop.py -q
"""

import http.server
import importlib.util
import json
import socket
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles/autostop/files/gpubox-autostop.py"
spec = importlib.util.spec_from_file_location("gpubox_autostop", SCRIPT)
autostop = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = autostop  # dataclasses look their module up there
spec.loader.exec_module(autostop)

Readings = autostop.Readings
NOW = 1_800_000_000.0  # a fixed "now" (2027-01-15)
MINUTE = 60.0
HOUR = 3600.0


def idle_readings(**changes):
    """Nothing going on: Jupyter answers with no busy kernel, no SSH session, GPU at 0 %."""
    values = dict(busy_kernels=0, jupyter_last_activity=NOW - 10 * HOUR, ssh_sessions=0, gpu_utilization=[0])
    values.update(changes)
    return Readings(**values)


def decide(readings, up_since=NOW - 10 * HOUR, last_active=None, minutes=60, threshold=10, now=NOW):
    return autostop.decide(now, up_since, last_active, readings, minutes, threshold)


# --- The decision

def test_just_booted_is_not_idle_even_when_the_last_activity_is_old():
    """After a stop and start, the remembered activity is days old; the time since boot is what counts."""
    decision = decide(idle_readings(), up_since=NOW - 2 * MINUTE, last_active=NOW - 3 * 24 * HOUR)
    assert decision.action == "idle"
    assert decision.idle_seconds == pytest.approx(2 * MINUTE)
    assert decision.reason.startswith("idle 2 of 60 minutes since start-up: ")
    short = decide(idle_readings(), up_since=NOW - 10, last_active=NOW - 3 * 24 * HOUR, minutes=1)
    assert (short.action, short.reason.split(":")[0]) == ("idle", "idle 0 of 1 minute since start-up")


def test_a_busy_kernel_is_activity():
    decision = decide(idle_readings(busy_kernels=1), last_active=NOW - 5 * HOUR)
    assert decision.action == "active"
    assert decision.reason == "active: 1 busy kernel"
    assert decision.last_active == NOW


def test_recent_kernel_or_terminal_activity_restarts_the_idle_count():
    decision = decide(idle_readings(jupyter_last_activity=NOW - 5 * MINUTE), last_active=NOW - 5 * HOUR)
    assert decision.action == "idle"
    assert decision.idle_seconds == pytest.approx(5 * MINUTE)
    assert decision.last_active == NOW - 5 * MINUTE  # remembered, in case Jupyter goes away
    assert decision.reason == (
        "idle 5 of 60 minutes since the last activity: no busy kernel, last kernel or terminal activity 5 minutes ago, "
        "no SSH session (tunnels alone do not count), GPU 0% < 10%"
    )


def test_an_ssh_session_is_activity():
    decision = decide(idle_readings(ssh_sessions=1), last_active=NOW - 5 * HOUR)
    assert (decision.action, decision.reason) == ("active", "active: 1 SSH session")
    decision = decide(idle_readings(ssh_sessions=2, busy_kernels=3))
    assert decision.reason == "active: 3 busy kernels, 2 SSH sessions"


def test_a_gpu_at_or_above_the_threshold_is_activity():
    decision = decide(idle_readings(gpu_utilization=[3, 87]))
    assert (decision.action, decision.reason) == ("active", "active: GPU 87% >= 10%")
    assert decide(idle_readings(gpu_utilization=[10]), threshold=10).action == "active"


def test_a_gpu_below_the_threshold_is_idle():
    decision = decide(idle_readings(gpu_utilization=[0, 9]), threshold=10)
    assert decision.action == "stop"
    assert "GPU 9% < 10%" in decision.reason


def test_idle_long_enough_stops():
    decision = decide(idle_readings(), last_active=NOW - 61 * MINUTE)
    assert decision.action == "stop"
    assert decision.reason == (
        "stopping: idle for 61 minutes (no busy kernel, last kernel or terminal activity 600 minutes ago, "
        "no SSH session (tunnels alone do not count), GPU 0% < 10%)"
    )


def test_the_stop_comes_at_exactly_the_idle_time():
    assert decide(idle_readings(), last_active=NOW - 60 * MINUTE).action == "stop"
    almost = decide(idle_readings(), last_active=NOW - 60 * MINUTE + 1)
    assert almost.action == "idle"
    assert almost.reason.startswith("idle 59 of 60 minutes since the last activity: ")


def test_zero_minutes_is_off_whatever_the_readings():
    decision = decide(idle_readings(), up_since=NOW - 100 * HOUR, last_active=NOW - 100 * HOUR, minutes=0)
    assert decision.action == "off"
    assert decision.reason.startswith("off: ")


def test_unreachable_jupyter_is_said_and_counts_as_no_activity():
    readings = Readings(busy_kernels=None, jupyter_error="Jupyter at http://127.0.0.1:8888 unreachable: Connection refused",
                        ssh_sessions=0, gpu_utilization=None)
    decision = decide(readings, last_active=NOW - 2 * HOUR)
    assert decision.action == "stop"
    assert decision.reason == (
        "stopping: idle for 120 minutes (Jupyter not read (Jupyter at http://127.0.0.1:8888 unreachable: "
        "Connection refused), no SSH session (tunnels alone do not count), no GPU reading)"
    )


def test_a_failed_gpu_reading_is_said():
    decision = decide(idle_readings(gpu_utilization=None, gpu_error="nvidia-smi failed: no driver"),
                      up_since=NOW - 3 * MINUTE)
    assert decision.reason.endswith(
        "no SSH session (tunnels alone do not count), no GPU reading (nvidia-smi failed: no driver)")


def test_no_kernel_or_terminal_at_all_says_nothing_of_their_activity():
    decision = decide(idle_readings(jupyter_last_activity=None), up_since=NOW - 3 * MINUTE)
    assert decision.reason == (
        "idle 3 of 60 minutes since start-up: no busy kernel, no SSH session (tunnels alone do not count), GPU 0% < 10%")


def test_a_last_activity_in_the_future_is_not_negative_idleness():
    decision = decide(idle_readings(), last_active=NOW + HOUR)
    assert (decision.action, decision.idle_seconds, decision.last_active) == ("idle", 0.0, NOW)


# --- Parsers

# Process tables as (pid, ppid, cmdline), with the titles OpenSSH 9.2 on Debian 12 gave in the test container
# (tests/integration/test_autostop.py): `ps -eo pid,ppid,args` with a tunnel, a command and a terminal login open.
LISTENER = (43, 1, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
SYSTEM = [(1, 0, "/lib/systemd/systemd"), (29, 1, "/lib/systemd/systemd-journald"), LISTENER]
TUNNEL = [(62, 43, "sshd: ubuntu [priv]"), (77, 62, "sshd: ubuntu")]  # ssh -N -L 8888:127.0.0.1:8888: no session
COMMAND = [(63, 43, "sshd: ubuntu [priv]"), (72, 63, "sshd: ubuntu@notty"), (78, 72, "sleep 600")]  # ssh box sleep 600
TERMINAL = [(65, 43, "sshd: ubuntu [priv]"), (83, 65, "sshd: ubuntu@pts/0"), (84, 83, "-bash")]  # ssh box
# A multiplexed master (ssh -M -N) after one command through it has ended: a session title, nothing running.
IDLE_MASTER = [(120, 43, "sshd: ubuntu [priv]"), (126, 120, "sshd: ubuntu@notty")]
# OpenSSH 9.8 and later: the per-connection processes are sshd-session.
SESSION_98 = [(200, 43, "sshd-session: ubuntu [priv]"), (201, 200, "sshd-session: ubuntu@pts/1"), (202, 201, "-bash")]
TUNNEL_98 = [(210, 43, "sshd-session: ubuntu [priv]"), (211, 210, "sshd-session: ubuntu")]


def test_a_login_that_runs_a_command_or_a_shell_is_an_ssh_session():
    assert autostop.count_ssh_sessions(SYSTEM + COMMAND) == 1
    assert autostop.count_ssh_sessions(SYSTEM + TERMINAL) == 1
    assert autostop.count_ssh_sessions(SYSTEM + COMMAND + TERMINAL + TUNNEL) == 2
    assert autostop.count_ssh_sessions(SYSTEM + SESSION_98) == 1


def test_a_bare_tunnel_is_not_an_ssh_session():
    assert autostop.count_ssh_sessions(SYSTEM + TUNNEL) == 0
    assert autostop.count_ssh_sessions(SYSTEM + TUNNEL_98) == 0
    assert autostop.count_ssh_sessions(SYSTEM + IDLE_MASTER) == 0  # the title alone is not enough
    # The same master while a command runs through it counts.
    assert autostop.count_ssh_sessions(SYSTEM + IDLE_MASTER + [(130, 126, "sh -c pip install x")]) == 1


def test_sshd_listener_and_monitor_processes_are_not_ssh_sessions():
    # Each has children (the monitors, the user processes), and none is a session.
    assert autostop.count_ssh_sessions(SYSTEM + TUNNEL + [(63, 43, "sshd: ubuntu [priv]"), (64, 43, "sshd: unknown [net]"),
                                                          (66, 43, "sshd: ubuntu [preauth]")]) == 0
    # Titles that only look alike: not at the start, or not sshd's.
    assert autostop.count_ssh_sessions([(300, 1, "vim sshd: ubuntu@pts/0"), (301, 300, "sh"),
                                        (302, 1, "sshd-fake: ubuntu@pts/0"), (303, 302, "sh"),
                                        (304, 1, "sshd: ubuntu@tty1"), (305, 304, "sh")]) == 0


def test_ppid_is_read_after_the_last_parenthesis():
    assert autostop.parse_ppid("77 (sshd) S 62 62 62 0 -1 4194624 229 0 0 0") == 62
    assert autostop.parse_ppid("9 (a) b (c) S 4 9 9 0 -1") == 4  # a command name with ") " in it


def fake_proc(root, processes):
    for pid, ppid, cmdline in processes:
        (root / str(pid)).mkdir()
        (root / str(pid) / "stat").write_text(f"{pid} (x) S {ppid} {pid} {pid} 0 -1 4194560 1 2 3\n")
        (root / str(pid) / "cmdline").write_bytes(cmdline)


def test_the_process_table_is_read_from_proc(tmp_path):
    fake_proc(tmp_path, [
        (43, 1, b"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups\0"),
        (72, 63, b"sshd: ubuntu@notty\0\0\0"),  # sshd's title over argv, with NULs after it
        (78, 72, b"sleep\x00600\x00"),  # argv of a plain command
        (2, 0, b""),  # a kernel thread
    ])
    (tmp_path / "net").mkdir()  # not a process
    (tmp_path / "stat").write_text("btime 1\n")
    (tmp_path / "99").mkdir()  # a process that ended between the listing and the reading: no stat, no cmdline
    (tmp_path / "98").mkdir()
    (tmp_path / "98" / "stat").write_text("98 (gone) S 1 98 98\n")  # ended between its stat and its cmdline
    assert sorted(autostop.read_processes(str(tmp_path))) == [
        (2, 0, ""), (43, 1, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"),
        (72, 63, "sshd: ubuntu@notty"), (78, 72, "sleep 600")]
    assert autostop.read_ssh_sessions(str(tmp_path)) == 1


def test_the_real_process_table_is_readable():
    """This machine's own /proc: this process is in it, as a child of its parent."""
    processes = autostop.read_processes()
    assert (autostop.os.getpid(), autostop.os.getppid()) in {(pid, ppid) for pid, ppid, _ in processes}
    assert isinstance(autostop.read_ssh_sessions(), int)


def test_process_start_is_pid_1_start_after_boot():
    stat = "1 (my init) S 0 1 1 0 -1 4194560 100 200 3 4 5 6 7 8 20 0 1 0 12345 172032000 2797 18446744073709551615 1 1 0"
    proc_stat = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n"
    assert autostop.parse_process_start(stat, proc_stat, 100) == pytest.approx(1700000123.45)


def test_system_up_is_read_from_proc(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "stat").write_text("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 500 1 2 3\n")
    (tmp_path / "stat").write_text("cpu  1 2 3 4\nbtime 1700000000\n")
    ticks = autostop.os.sysconf("SC_CLK_TCK")
    assert autostop.read_system_up(proc=str(tmp_path)) == pytest.approx(1700000000 + 500 / ticks)


def test_the_timer_start_is_read_from_systemctl(tmp_path, monkeypatch):
    """systemctl gives the timer's start on the monotonic clock, in microseconds; it becomes Unix time."""
    started = int((autostop.time.monotonic() - 30) * 1e6)
    fake = tmp_path / "systemctl"
    fake.write_text('#!/bin/sh\n[ "$*" = "show --property=ActiveEnterTimestampMonotonic --value t.timer" ] || exit 1\n'
                    f"echo {started}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert autostop.read_timer_since("t.timer") == pytest.approx(autostop.time.time() - 30, abs=1)
    assert autostop.read_timer_since("other.timer") is None
    fake.write_text("#!/bin/sh\necho 0\n")  # a timer that is not active
    assert autostop.read_timer_since("t.timer") is None
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert autostop.read_timer_since("t.timer") is None


def test_times_and_tokens_are_parsed():
    assert autostop.parse_time("2026-11-26T10:02:03.500000Z") == pytest.approx(1795687323.5)
    assert autostop.parse_time("2026-11-26T10:02:03+00:00") == pytest.approx(1795687323.0)
    assert autostop.format_time(1795687323.5) == "2026-11-26T10:02:03Z"
    assert autostop.parse_token("JUPYTER_TOKEN=abc123\n") == "abc123"
    assert autostop.parse_token("# comment\nOTHER=1\nJUPYTER_TOKEN='q'\n") == "q"
    assert autostop.parse_token("") == ""


def test_gpu_utilisation_is_parsed():
    assert autostop.parse_gpu_utilization("0\n[N/A]\n45\n[Not Supported]\n100\n") == [0, 45, 100]
    assert autostop.parse_gpu_utilization("") == []


def test_state_round_trips_to_the_second(tmp_path):
    path = tmp_path / "autostop" / "last-active"
    assert autostop.read_state(str(path)) is None
    autostop.write_state(str(path), 1795687323.9)
    assert path.read_text() == "2026-11-26T10:02:03Z\n"
    assert autostop.read_state(str(path)) == pytest.approx(1795687323.0)


# --- Jupyter, through a tiny HTTP server

TOKEN = "s3cret-t0ken"


class FakeJupyter(http.server.BaseHTTPRequestHandler):
    """Answers like Jupyter Server: 403 without the token; kernels and terminals only with no_track_activity=1.

    /api/status answers 500: the check must not read it (an open JupyterLab tab moves its last_activity).
    terminals as a number: /api/terminals answers that status (404: the terminals API is off).
    """

    requests = []
    kernels = [
        {"id": "a", "execution_state": "busy", "last_activity": "2026-11-26T10:01:00.000000Z"},
        {"id": "b", "execution_state": "idle", "last_activity": "2026-11-26T10:02:03.500000Z"},
    ]
    terminals = [{"name": "1", "last_activity": "2026-11-26T09:30:00.000000Z"}]

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append((url.path, query, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != f"token {TOKEN}":
            return self._answer(403, {"message": "Forbidden"})
        if url.path == "/api/terminals" and isinstance(self.terminals, int):
            return self._answer(self.terminals, {"message": "Not Found" if self.terminals == 404 else "Error"})
        if query.get("no_track_activity") != ["1"]:
            return self._answer(400, {"message": "this call would count as activity"})
        if url.path == "/api/kernels":
            return self._answer(200, self.kernels)
        if url.path == "/api/terminals":
            return self._answer(200, self.terminals)
        return self._answer(500, {"message": f"{url.path} must not be read"})

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def jupyter(monkeypatch):
    # A proxy in the environment must not be used for Jupyter on this machine.
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    FakeJupyter.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeJupyter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def token_file(tmp_path, token=TOKEN):
    path = tmp_path / "jupyter-token"
    path.write_text(f"JUPYTER_TOKEN={token}\n")
    return str(path)


def test_jupyter_is_read_with_the_token_and_without_tracking_activity(jupyter, tmp_path):
    busy, last, error = autostop.read_jupyter(jupyter, token_file(tmp_path))
    assert (busy, error) == (1, None)
    # The latest of the kernels' and terminals' last_activity: kernel b's.
    assert last == pytest.approx(autostop.parse_time("2026-11-26T10:02:03.5Z"))
    paths = [(path, query) for path, query, _ in FakeJupyter.requests]
    assert paths == [("/api/kernels", {"no_track_activity": ["1"]}), ("/api/terminals", {"no_track_activity": ["1"]})]
    assert {auth for _, _, auth in FakeJupyter.requests} == {f"token {TOKEN}"}
    assert "/api/status" not in {path for path, _ in paths}


def test_terminal_activity_counts(jupyter, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeJupyter, "terminals", [{"name": "1", "last_activity": "2026-11-26T10:30:00.000000Z"},
                                                   {"name": "2", "last_activity": "2026-11-26T10:10:00.000000Z"}])
    _, last, _ = autostop.read_jupyter(jupyter, token_file(tmp_path))
    assert last == pytest.approx(autostop.parse_time("2026-11-26T10:30:00Z"))


def test_terminals_switched_off_are_no_terminal_activity(jupyter, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeJupyter, "terminals", 404)
    busy, last, error = autostop.read_jupyter(jupyter, token_file(tmp_path))
    assert (busy, error) == (1, None)
    assert last == pytest.approx(autostop.parse_time("2026-11-26T10:02:03.5Z"))
    assert [path for path, _, _ in FakeJupyter.requests] == ["/api/kernels", "/api/terminals"]


def test_no_kernel_and_no_terminal_is_no_activity(jupyter, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeJupyter, "kernels", [])
    monkeypatch.setattr(FakeJupyter, "terminals", [])
    assert autostop.read_jupyter(jupyter, token_file(tmp_path)) == (0, None, None)


def test_kernel_activity_is_the_latest_of_the_kernels():
    assert autostop.latest_activity([
        {"last_activity": "2026-11-26T10:00:00.000000Z"}, {"last_activity": "2026-11-26T11:00:00.000000Z"},
        {"last_activity": "2026-11-26T10:30:00.000000Z"},
    ]) == pytest.approx(autostop.parse_time("2026-11-26T11:00:00Z"))
    # A model without one, or with one that is not a time, is passed over.
    assert autostop.latest_activity([{"id": "a"}, {"last_activity": None}, {"last_activity": "soon"},
                                     {"last_activity": "2026-11-26T10:00:00Z"}]) == pytest.approx(
        autostop.parse_time("2026-11-26T10:00:00Z"))
    assert autostop.latest_activity([]) is None


def test_jupyter_with_no_busy_kernel(jupyter, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeJupyter, "kernels", [{"execution_state": "idle"}, {"execution_state": "starting"}])
    assert autostop.read_jupyter(jupyter + "/", token_file(tmp_path))[0] == 0


def test_a_failing_terminals_api_is_said(jupyter, tmp_path, monkeypatch):
    """Only a 404 means terminals are off; any other error, or an answer that is not a list, is said."""
    monkeypatch.setattr(FakeJupyter, "terminals", 500)
    assert autostop.read_jupyter(jupyter, token_file(tmp_path)) == (None, None, f"Jupyter at {jupyter} answered HTTP 500")
    monkeypatch.setattr(FakeJupyter, "terminals", {"message": "not a list"})
    assert autostop.read_jupyter(jupyter, token_file(tmp_path)) == (None, None, f"Jupyter at {jupyter} unreadable: not a list")


def test_a_refused_token_is_said_without_showing_it(jupyter, tmp_path):
    busy, last, error = autostop.read_jupyter(jupyter, token_file(tmp_path, "wrong-token"))
    assert (busy, last) == (None, None)
    assert error == f"Jupyter at {jupyter} answered HTTP 403"


def test_a_missing_token_file_is_said(tmp_path):
    busy, _, error = autostop.read_jupyter("http://127.0.0.1:1", str(tmp_path / "absent"))
    assert busy is None
    assert error.startswith(f"no token file {tmp_path / 'absent'}")


def test_unreachable_jupyter_is_said(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    busy, last, error = autostop.read_jupyter(f"http://127.0.0.1:{port}", token_file(tmp_path))
    assert (busy, last) == (None, None)
    assert error == f"Jupyter at http://127.0.0.1:{port} unreachable: Connection refused"
    decision = autostop.decide(NOW, NOW - HOUR, None, Readings(busy_kernels=busy, jupyter_error=error), 60, 10)
    assert decision.action == "stop" and f"Jupyter not read ({error})" in decision.reason


# --- nvidia-smi

def fake_nvidia_smi(tmp_path, body):
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_gpu_utilisation_is_read_from_nvidia_smi(tmp_path):
    smi = fake_nvidia_smi(tmp_path, '[ "$*" = "--query-gpu=utilization.gpu --format=csv,noheader,nounits" ] || exit 3\n'
                                    'printf "3\\n87\\n"\n')
    assert autostop.read_gpu(smi) == ([3, 87], None)


def test_no_nvidia_smi_is_no_gpu_reading(tmp_path):
    assert autostop.read_gpu(str(tmp_path / "absent")) == (None, None)


def test_a_failing_nvidia_smi_is_said(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\n"
                                    "exit 9\n")
    assert autostop.read_gpu(smi) == (
        None, "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")


# --- One run, with fake readers

@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    """main() with the readers replaced; returns (exit status, printed line, shutdowns, state file)."""
    state = tmp_path / "last-active"
    shutdowns = []

    def go(readings, up_since, extra=()):
        monkeypatch.setattr(autostop, "read_jupyter", lambda url, path: (
            readings.busy_kernels, readings.jupyter_last_activity, readings.jupyter_error))
        monkeypatch.setattr(autostop, "read_gpu", lambda smi: (readings.gpu_utilization, readings.gpu_error))
        monkeypatch.setattr(autostop, "read_ssh_sessions", lambda: readings.ssh_sessions)
        monkeypatch.setattr(autostop, "read_system_up", lambda: up_since)
        monkeypatch.setattr(autostop, "read_timer_since", lambda timer: None)
        monkeypatch.setattr(autostop, "shutdown", lambda: shutdowns.append("shutdown -h now") or 0)
        status = autostop.main(["--minutes", "1", "--state-file", str(state), *extra])
        return status, capsys.readouterr().out.strip(), list(shutdowns), state

    return go


def test_a_run_that_sees_activity_remembers_it_and_does_not_stop(run):
    status, line, shutdowns, state = run(idle_readings(ssh_sessions=1), up_since=autostop.time.time() - HOUR)
    assert (status, line, shutdowns) == (0, "active: 1 SSH session", [])
    assert autostop.read_state(str(state)) == pytest.approx(autostop.time.time(), abs=2)


def test_a_run_after_the_idle_time_shuts_down(run):
    hour_ago = autostop.time.time() - HOUR
    status, line, shutdowns, state = run(idle_readings(jupyter_last_activity=hour_ago), up_since=hour_ago)
    assert status == 0
    assert line.startswith("stopping: idle for 60 minutes (no busy kernel, last kernel or terminal activity 60 minutes ago")
    assert shutdowns == ["shutdown -h now"]


def test_a_dry_run_neither_stops_nor_writes(run):
    status, line, shutdowns, state = run(idle_readings(ssh_sessions=1), up_since=0.0, extra=["--dry-run"])
    assert (status, line, shutdowns, state.exists()) == (0, "active: 1 SSH session (dry run)", [], False)
    status, line, shutdowns, state = run(idle_readings(jupyter_last_activity=None), up_since=0.0, extra=["--dry-run"])
    assert line.startswith("stopping: ") and line.endswith("(dry run)")
    assert shutdowns == []
