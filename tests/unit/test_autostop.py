"""Unit tests for the autostop role's check and command (roles/autostop/files/gpubox-autostop.py).

The decision is a pure function, driven here with fake clocks, process tables, counters and readings: each
rule is a row of a table. The readers run against a fake /proc and /dev, Jupyter's API on a tiny HTTP server
on 127.0.0.1 that checks the token and no_track_activity and refuses /api/status, and a fake nvidia-smi.
tests/integration/test_autostop.py runs it for real under systemd, with real processes.

Run from the repository root: python -m pytest tests/unit/test_autostop.py -q
"""

import http.server
import importlib.util
import json
import os
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

Readings, Process, Settings = autostop.Readings, autostop.Process, autostop.Settings
NOW = 1_800_000_000.0  # a fixed "now" (2027-01-15)
MINUTE = 60.0
HOUR = 3600.0
BOOT = NOW - 10 * HOUR
CHECK = 60.0  # the check interval: the previous check ran a minute ago

# A process table as the box has it: systemd, sshd, Jupyter (the login user, uid 1000) and its kernel.
SYSTEM = [Process(1, 0, 0, BOOT, 50.0, "/lib/systemd/systemd"),
          Process(43, 1, 0, BOOT, 1.0, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"),
          Process(500, 1, 1000, BOOT, 30.0, "/opt/envs/jupyter/bin/python /opt/envs/jupyter/bin/jupyter-lab"),
          Process(510, 500, 1000, BOOT, 5.0, "/opt/envs/kernel/bin/python -m ipykernel_launcher -f k.json")]


def sample(processes=SYSTEM, network=1_000_000, at=NOW - CHECK):
    """What the previous check left: its time, CPU seconds of people's processes, the network counter."""
    counted = autostop.work_processes(processes, 1000)
    return {"sample": {"time": at, "cpu": autostop.cpu_sample(counted), "network": network}}


def busier(processes, pid, seconds):
    """The table a minute later, with `seconds` more CPU time for pid."""
    return [autostop.dataclasses.replace(p, cpu_seconds=p.cpu_seconds + (seconds if p.pid == pid else 0))
            for p in processes]


def quiet(**changes):
    """Nothing going on: Jupyter answers with no busy kernel, no SSH login, GPU at 0 %, no CPU, no traffic."""
    values = dict(busy_kernels=0, jupyter_last_activity=NOW - 10 * HOUR, processes=SYSTEM, network_bytes=1_000_000,
                  gpu_utilization=[0])
    values.update(changes)
    return Readings(**values)


def warned(since, at=None):
    """A state whose idle stop was announced (for the idle period since `since`) at `at`."""
    return {**sample(), "last_active": since, "warned": {"key": f"idle:{since:.0f}", "at": at or NOW - 11 * MINUTE}}


def decide(readings, state=None, up_since=BOOT, boot=BOOT, hold_until=None, now=NOW, **settings):
    state = sample() if state is None else state
    return autostop.decide(now, up_since, boot, hold_until, state, readings, Settings(**settings))


def run_for(readings, span_minutes, state=None, step=CHECK, **settings):
    """Checks every `step` seconds from NOW with the same readings, as the timer would: the decisions."""
    decisions, state = [], sample() if state is None else state
    for i in range(int(span_minutes * MINUTE / step) + 1):
        now = NOW + i * step
        state = {**state, "sample": {**state["sample"], "time": now - step}}
        decision = autostop.decide(now, BOOT, BOOT, None, state, readings, Settings(**settings))
        decisions.append((now, decision))
        state = decision.state
        if decision.action == "stop":
            break
    return decisions


# --- The decision: what is work, what is a moment of activity, what is neither

ACTIVE_CASES = {
    # Finding 2: work that no Jupyter or SSH reading sees.
    "a detached tmux job of the login user using CPU": (
        dict(processes=SYSTEM + [Process(700, 1, 1000, BOOT, 400.0, "tmux new -d python train.py"),
                                 Process(701, 700, 1000, NOW - 2 * HOUR, 900.0, "python train.py")]),
        {701: 45.0}, "CPU 75% >= 10% (python)"),
    "a root job started from an SSH login": (
        dict(processes=SYSTEM + [Process(80, 43, 0, BOOT, 0.1, "sshd: ubuntu@pts/0"),
                                 Process(81, 80, 1000, BOOT, 0.1, "-bash"),
                                 Process(82, 81, 0, BOOT, 10.0, "sudo python prep.py"),
                                 Process(83, 82, 0, BOOT, 10.0, "python prep.py")]),
        {83: 30.0}, "CPU 50% >= 10% (python)"),
    "a tmux server started with sudo -i, after the login ended (its login uid stays)": (
        dict(processes=SYSTEM + [Process(720, 1, 0, BOOT, 1.0, "tmux new -d", login_uid=1000),
                                 Process(721, 720, 0, BOOT, 1.0, "python prep.py", login_uid=1000)]),
        {721: 60.0}, "CPU 100% >= 10% (python)"),
    "a job in a container": (
        dict(processes=SYSTEM + [Process(730, 1, 0, BOOT, 1.0, "/usr/bin/containerd-shim-runc-v2 -namespace moby"),
                                 Process(731, 730, 0, BOOT, 1.0, "python train.py")]),
        {731: 30.0}, "CPU 50% >= 10% (python)"),
    "a CPU-bound data loader in a kernel, GPU below its threshold": (
        dict(busy_kernels=1, gpu_utilization=[4]), {510: 120.0}, "CPU 200% >= 10% (python)"),
    "a download": (dict(network_bytes=1_000_000 + 60 * 5 * 1024 * 1024), {}, "network 5120 KiB/s >= 100 KiB/s"),
    "a busy GPU": (dict(gpu_utilization=[3, 87]), {}, "GPU 87% >= 10%"),
}


@pytest.mark.parametrize("changes, cpu, said", ACTIVE_CASES.values(), ids=list(ACTIVE_CASES))
def test_work_keeps_the_machine_up(changes, cpu, said):
    previous = sample(changes.get("processes", SYSTEM))
    readings = quiet(**changes)
    for pid, seconds in cpu.items():
        readings.processes = busier(readings.processes, pid, seconds)
    decision = decide(readings, state={**previous, "last_active": NOW - 5 * HOUR})
    assert decision.action == "active", decision.reason
    assert said in decision.reason
    assert decision.state["last_active"] == NOW and decision.stops_at is None


NOT_WORK_CASES = {
    "the system's own processes": ({1: 30.0, 43: 30.0}, "CPU 0% < 10%"),
    "sshd forwarding a tunnel": ({77: 20.0}, "CPU 0% < 10%"),
    "a little of Jupyter polling for an open tab": ({500: 1.0}, "CPU 2% < 10%"),
    "a root service or timer no login started": ({90: 40.0}, "CPU 0% < 10%"),
}


@pytest.mark.parametrize("cpu, said", NOT_WORK_CASES.values(), ids=list(NOT_WORK_CASES))
def test_what_is_not_work(cpu, said):
    table = SYSTEM + [Process(62, 43, 0, BOOT, 0.1, "sshd: ubuntu [priv]", login_uid=1000),
                      Process(77, 62, 1000, BOOT, 1.0, "sshd: ubuntu", login_uid=1000),
                      Process(90, 1, 0, BOOT, 5.0, "/usr/bin/python3 /usr/bin/unattended-upgrade")]
    readings = quiet(processes=table)
    for pid, seconds in cpu.items():
        readings.processes = busier(readings.processes, pid, seconds)
    decision = decide(readings, state={**sample(table), "last_active": NOW - 20 * MINUTE})
    assert decision.action == "idle" and said in decision.reason, decision.reason
    assert decision.reason.startswith("idle 20 of 60 minutes since the last activity: ")


def test_an_open_shell_counts_by_what_is_typed_into_it_not_for_being_open():
    """Finding 3: a terminal left open on a laptop is no activity; typing in it (SSH, JupyterLab's terminal) is."""
    login = SYSTEM + [Process(80, 43, 0, BOOT, 0.1, "sshd: ubuntu@pts/0"), Process(81, 80, 1000, BOOT, 0.1, "-bash")]
    typed = decide(quiet(processes=login, ssh_logins=1, terminals={"pts/0": NOW - 2 * MINUTE, "pts/1": NOW - HOUR}),
                   state={**sample(login), "last_active": NOW - 3 * HOUR})
    assert typed.action == "idle" and typed.idle_seconds == pytest.approx(2 * MINUTE)
    assert "1 SSH login, last terminal input 2 minutes ago" in typed.reason
    forgotten = decide(quiet(processes=login, ssh_logins=1, terminals={"pts/0": NOW - 3 * HOUR}),
                       state={**warned(NOW - 3 * HOUR), **sample(login)})
    assert forgotten.action == "stop", forgotten.reason
    assert "1 SSH login, last terminal input 180 minutes ago" in forgotten.reason


def test_a_busy_kernel_without_work_counts_as_hung_after_hung_minutes():
    """Finding 3: a cell waiting on input(), or a deadlock, holds the box up only for hung_minutes."""
    waiting = quiet(busy_kernels=1, jupyter_last_activity=NOW - 20 * MINUTE)
    held = decide(waiting, state={**sample(), "last_active": NOW - 20 * MINUTE}, minutes=10)
    assert held.action in ("idle", "warn") and held.stops_at == pytest.approx(NOW + 10 * MINUTE)
    assert "1 busy kernel with no CPU or GPU work for 20 minutes (counted as hung after 30)" in held.reason
    hung = decide(quiet(busy_kernels=1, jupyter_last_activity=NOW - 31 * MINUTE), state=warned(NOW - 31 * MINUTE),
                  minutes=10)
    assert hung.action == "stop"
    assert "1 busy kernel with no CPU or GPU work for 31 minutes: counted as hung" in hung.reason
    # Busy and working is work, however long.
    working = quiet(busy_kernels=1, processes=busier(SYSTEM, 510, 30.0))
    assert decide(working, state={**sample(), "last_active": NOW - 5 * HOUR}).action == "active"


def test_recent_kernel_or_terminal_activity_restarts_the_idle_count():
    decision = decide(quiet(jupyter_last_activity=NOW - 5 * MINUTE), state={**sample(), "last_active": NOW - HOUR})
    assert decision.action == "idle" and decision.idle_seconds == pytest.approx(5 * MINUTE)
    assert "last kernel activity 5 minutes ago" in decision.reason


def test_just_booted_is_not_idle_even_when_the_last_activity_is_old():
    decision = decide(quiet(), up_since=NOW - 2 * MINUTE, state={**sample(), "last_active": NOW - 3 * 24 * HOUR})
    assert decision.action == "idle" and decision.idle_seconds == pytest.approx(2 * MINUTE)
    assert decision.reason.startswith("idle 2 of 60 minutes since start-up: ")


def test_the_first_check_has_no_rates_and_says_so():
    decision = decide(quiet(), state={})
    assert "CPU and network from the next check on" in decision.reason
    after_a_stop = decide(quiet(), state=sample(at=BOOT - 2 * HOUR))  # the sample is from before this boot
    assert "CPU and network from the next check on" in after_a_stop.reason
    # A long interval (the timer set to 30min) still measures, within one boot.
    slow = decide(quiet(processes=busier(SYSTEM, 510, 1800.0)), state=sample(at=NOW - 30 * MINUTE))
    assert slow.action == "active" and "CPU 100% >= 10%" in slow.reason


def test_a_counter_that_went_back_is_no_reading():
    decision = decide(quiet(network_bytes=10), state={**sample(), "last_active": NOW - MINUTE})
    assert "network" not in decision.reason


# --- Warning, stop, hold, cap

def test_the_stop_is_warned_warn_minutes_before_and_never_sooner_after_the_warning():
    """Idle since NOW: with checks every minute the warning comes at 50 minutes, the stop at 60."""
    decisions = run_for(quiet(jupyter_last_activity=None), 70, state={**sample(), "last_active": NOW})
    warnings = [(now, d) for now, d in decisions if d.message]
    assert len(warnings) == 1
    when, warning = warnings[0]
    assert when == NOW + 50 * MINUTE and warning.action == "warn"
    assert warning.reason.startswith("warning: stopping at ")
    assert "stops at" in warning.message and "gpubox-autostop hold 2h" in warning.message
    stop_at, stop = decisions[-1]
    assert stop.action == "stop" and stop_at == NOW + 60 * MINUTE
    assert stop.reason.startswith("stopping: idle for 60 minutes (")


def test_a_short_idle_time_is_warned_as_long_as_it_is():
    decisions = run_for(quiet(jupyter_last_activity=None), 5, state={**sample(), "last_active": NOW}, step=10,
                        minutes=1)
    warned_at = [now for now, d in decisions if d.message]
    assert warned_at == [NOW]
    assert decisions[-1][1].action == "stop" and decisions[-1][0] == NOW + MINUTE


def test_an_idle_time_reached_without_a_warning_is_warned_first():
    """A hung kernel counted at once, or a hold that ended: the stop still waits warn_minutes after the warning."""
    late = decide(quiet(jupyter_last_activity=None), state={**sample(), "last_active": NOW - 2 * HOUR})
    assert late.action == "warn" and late.stops_at == pytest.approx(NOW + 10 * MINUTE)
    assert decide(quiet(jupyter_last_activity=None), state={**late.state, "sample": sample()["sample"]},
                  now=NOW + 5 * MINUTE).action == "idle"
    assert decide(quiet(jupyter_last_activity=None), state={**late.state, "sample": sample(at=NOW + 9 * MINUTE)["sample"]},
                  now=NOW + 10 * MINUTE).action == "stop"


def test_no_warning_when_warn_minutes_is_0():
    decision = decide(quiet(jupyter_last_activity=None), state={**sample(), "last_active": NOW - HOUR}, warn_minutes=0)
    assert decision.action == "stop" and decision.message is None


def test_activity_after_a_warning_cancels_the_stop_and_a_new_idle_period_is_warned_again():
    late = decide(quiet(jupyter_last_activity=None), state={**sample(), "last_active": NOW - 55 * MINUTE})
    assert late.action == "warn"
    typed = decide(quiet(jupyter_last_activity=None, terminals={"pts/0": NOW + MINUTE}),
                   state={**late.state, "sample": sample(at=NOW)["sample"]}, now=NOW + 2 * MINUTE)
    assert typed.action == "idle" and typed.state["warned"] is None


def test_a_hold_postpones_the_idle_stop_and_its_end_restarts_the_count():
    held = decide(quiet(jupyter_last_activity=None), state=warned(NOW - 5 * HOUR), hold_until=NOW + HOUR)
    assert held.action == "held" and held.reason.startswith("held until ")
    assert held.stops_at is None
    ended = decide(quiet(jupyter_last_activity=None), state=warned(NOW - 5 * HOUR), hold_until=NOW - 5 * MINUTE)
    assert ended.action == "idle" and ended.idle_seconds == pytest.approx(5 * MINUTE)
    assert "since the end of the hold" in ended.reason


def test_max_hours_stops_a_busy_machine_and_a_hold_does_not_postpone_it():
    busy = quiet(gpu_utilization=[99])
    before = decide(busy, boot=NOW - 7 * HOUR - 55 * MINUTE, max_hours=8, hold_until=NOW + HOUR)
    assert before.action == "warn" and "max_hours=8" in before.message and "hold does not change that" in before.message
    assert before.stops_at == pytest.approx(NOW + 5 * MINUTE) or before.stops_at >= NOW + 5 * MINUTE
    cap = decide(busy, state={**sample(), "warned": {"key": f"cap:{NOW - 8 * HOUR:.0f}", "at": NOW - 10 * MINUTE}},
                 boot=NOW - 8 * HOUR, max_hours=8, hold_until=NOW + HOUR)
    assert cap.action == "stop" and cap.reason.startswith("stopping: running for 8 hours (max_hours)")


def test_off_when_both_are_0():
    decision = decide(quiet(gpu_utilization=[0]), minutes=0, max_hours=0)
    assert decision.action == "off"
    capped_only = decide(quiet(), minutes=0, max_hours=24)
    assert capped_only.action == "idle" and "no idle stop" in capped_only.reason


def test_a_failed_gpu_reading_and_an_unread_jupyter_are_said():
    decision = decide(quiet(gpu_utilization=None, gpu_error="nvidia-smi failed: x", busy_kernels=None,
                            jupyter_error="Jupyter at http://127.0.0.1:8888 unreachable: Connection refused"))
    assert "no GPU reading (nvidia-smi failed: x)" in decision.reason
    assert "Jupyter not read (Jupyter at http://127.0.0.1:8888 unreachable: Connection refused)" in decision.reason


def test_the_status_says_how_long_idle_when_it_stops_and_why():
    decision = decide(quiet(jupyter_last_activity=None), state={**sample(), "last_active": NOW - 12 * MINUTE})
    lines = autostop.status_lines(NOW + 30, Settings(), decision.state, None)
    assert lines[0] == "Auto-stop: after 60 idle minutes, with a warning 10 minutes before."
    assert lines[1] == "Cap: none (max_hours is 0)."
    assert lines[2].startswith("Idle for: 12 minutes (since ")
    assert lines[3].startswith("Stops at: ") and "(in 48 minutes)" in lines[3]
    assert lines[4].startswith("Last check, 0 minutes ago: idle 12 of 60 minutes since the last activity: ")
    held = autostop.status_lines(NOW, Settings(max_hours=8), decision.state, NOW + 3 * HOUR)
    assert "Held until " in held[2] and "(3 hours from now)" in held[2] and held[1].startswith("Cap: stops 8 hours")
    # Switched off: no schedule from an earlier check is shown.
    assert autostop.status_lines(NOW, Settings(minutes=0), decision.state, None) == [
        "Auto-stop: off (autostop_minutes is 0).", "Cap: none (max_hours is 0)."]


@pytest.mark.parametrize("text, seconds", [("3h", 3 * HOUR), ("90m", 90 * MINUTE), ("1h30m", 90 * MINUTE),
                                           ("2h 30min", 150 * MINUTE), ("45", 45 * MINUTE)])
def test_hold_durations(text, seconds):
    assert autostop.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3d", "h", "soon", "-1h"])
def test_a_duration_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError, match="is not a duration such as 3h"):
        autostop.parse_duration(text)


# --- Parsers and readers

def test_stat_fields_are_read_after_the_last_parenthesis():
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    stat = "9 (a) b (c) S 4 9 9 0 -1 4194560 1 2 3 4 100 50 7 3 20 0 1 0 12345 1 2"
    assert autostop.parse_stat(stat) == (4, 160, 12345)


def test_network_bytes_leave_loopback_out():
    text = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
            "    lo: 9000000    100    0    0    0     0          0         0  9000000     100    0    0    0     0       0          0\n"
            "  eth0: 1500       10    0    0    0     0          0         0  2500        20    0    0    0     0       0          0\n"
            "  ens5: 1000       10    0    0    0     0          0         0  0           0    0    0    0     0       0          0\n")
    assert autostop.parse_network_bytes(text) == 5000


def test_uid_min_is_read_from_login_defs():
    assert autostop.parse_uid_min("# comment\nUID_MIN\t\t\t 500\nUID_MAX 60000\n") == 500
    assert autostop.parse_uid_min("") == 1000


SSH = [Process(43, 1, 0, BOOT, 0, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"),
       Process(62, 43, 0, BOOT, 0, "sshd: ubuntu [priv]"), Process(77, 62, 1000, BOOT, 0, "sshd: ubuntu"),  # ssh -N
       Process(63, 43, 0, BOOT, 0, "sshd: ubuntu [priv]"), Process(72, 63, 1000, BOOT, 0, "sshd: ubuntu@notty"),
       Process(78, 72, 1000, BOOT, 0, "sleep 600"),  # ssh box sleep 600
       Process(83, 43, 1000, BOOT, 0, "sshd-session: ubuntu@pts/1"), Process(84, 83, 1000, BOOT, 0, "-bash"),  # 9.8
       Process(126, 43, 1000, BOOT, 0, "sshd: ubuntu@notty"),  # a multiplexed master with nothing running
       Process(300, 1, 1000, BOOT, 0, "vim sshd: ubuntu@pts/0"), Process(301, 300, 1000, BOOT, 0, "sh")]


def test_ssh_logins_are_sessions_with_a_child_and_tunnels_are_not():
    multiplexed = [Process(90, 43, 1000, BOOT, 0, "sshd: ubuntu@pts/0,pts/3"), Process(91, 90, 1000, BOOT, 0, "-bash")]
    assert autostop.ssh_sessions(SSH + multiplexed) == [(72, None), (83, "pts/1"), (90, "pts/0,pts/3")]


def test_the_process_table_and_terminal_input_are_read_from_proc_and_dev(tmp_path):
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    (proc / "net").mkdir(parents=True)
    (proc / "stat").write_text("cpu 1\nbtime 1700000000\n")
    ticks = os.sysconf("SC_CLK_TCK")
    for pid, ppid, title in [(83, 43, b"sshd: ubuntu@pts/0\0\0"), (84, 83, b"-bash\0")]:
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "loginuid").write_text("1000" if pid == 84 else "4294967295")
        (proc / str(pid) / "stat").write_text(f"{pid} (x) S {ppid} 1 1 0 -1 0 0 0 0 0 {ticks} {ticks} 0 0 20 0 1 0 {ticks * 5} 1 2\n")
        (proc / str(pid) / "cmdline").write_bytes(title)
    (proc / "99").mkdir()  # ended between the listing and the reading
    processes = sorted(autostop.read_processes(str(proc)), key=lambda p: p.pid)
    assert [(p.pid, p.ppid, p.title, p.cpu_seconds, p.start, p.login_uid) for p in processes] == [
        (83, 43, "sshd: ubuntu@pts/0", 2.0, 1700000005.0, None), (84, 83, "-bash", 2.0, 1700000005.0, 1000)]
    assert processes[0].uid == os.getuid()
    (dev / "pts").mkdir(parents=True)
    for name in ("0", "ptmx"):
        (dev / "pts" / name).write_text("")
    os.utime(dev / "pts" / "0", (NOW - 120, NOW - 60))  # typed into 2 minutes ago, printed to 1 minute ago
    assert autostop.read_terminals(str(dev)) == {"pts/0": NOW - 120}
    assert autostop.read_terminals(str(tmp_path / "nothing")) == {}


def test_the_real_process_table_is_readable():
    """This machine's own /proc: this process is in it, with its parent, its owner and some CPU time."""
    mine = [p for p in autostop.read_processes() if p.pid == os.getpid()]
    assert len(mine) == 1 and mine[0].ppid == os.getppid() and mine[0].uid == os.getuid() and mine[0].cpu_seconds > 0
    assert autostop.read_network() is not None


def test_system_up_is_read_from_proc(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "stat").write_text("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 500 1 2 3\n")
    (tmp_path / "stat").write_text("cpu  1 2 3 4\nbtime 1700000000\n")
    ticks = os.sysconf("SC_CLK_TCK")
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


def test_times_and_tokens_are_parsed():
    assert autostop.parse_time("2026-11-26T10:02:03.500000Z") == pytest.approx(1795687323.5)
    assert autostop.format_time(1795687323.5) == "2026-11-26T10:02:03Z"
    assert autostop.parse_token("JUPYTER_TOKEN=abc123\n") == "abc123"
    assert autostop.parse_token("# comment\nOTHER=1\nJUPYTER_TOKEN='q'\n") == "q"
    assert autostop.parse_token("") == ""
    assert autostop.parse_gpu_utilization("0\n[N/A]\n45\n[Not Supported]\n100\n") == [0, 45, 100]


def test_settings_are_read_and_bad_ones_named(tmp_path):
    path = tmp_path / "autostop.json"
    path.write_text(json.dumps({"minutes": 30, "max_hours": 1.5, "jupyter_url": "http://127.0.0.1:9999", "new": 1}))
    settings = autostop.read_settings(str(path))
    assert (settings.minutes, settings.max_hours, settings.jupyter_url, settings.warn_minutes) == \
        (30, 1.5, "http://127.0.0.1:9999", 10)
    path.write_text(json.dumps({"minutes": "soon"}))
    with pytest.raises(ValueError, match="minutes must be a number, 0 or more, not 'soon'"):
        autostop.read_settings(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        autostop.read_settings(str(tmp_path / "absent.json"))


# --- Jupyter, through a tiny HTTP server

TOKEN = "s3cret-t0ken"


class FakeJupyter(http.server.BaseHTTPRequestHandler):
    """Answers like Jupyter Server: 403 without the token; kernels only with no_track_activity=1.

    Anything else, /api/status and /api/terminals included, answers 500: the check must not read them.
    """

    requests = []
    kernels = [
        {"id": "a", "execution_state": "busy", "last_activity": "2026-11-26T10:01:00.000000Z"},
        {"id": "b", "execution_state": "idle", "last_activity": "2026-11-26T10:02:03.500000Z"},
    ]

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append((url.path, query, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != f"token {TOKEN}":
            return self._answer(403, {"message": "Forbidden"})
        if query.get("no_track_activity") != ["1"]:
            return self._answer(400, {"message": "this call would count as activity"})
        if url.path == "/api/kernels":
            return self._answer(200, self.kernels)
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
    # The latest of the kernels' last_activity: kernel b's. Terminals are not asked: what is typed into them is
    # read from their /dev/pts/N, and their last_activity moves with their output (a `watch` left open in a tab).
    assert last == pytest.approx(autostop.parse_time("2026-11-26T10:02:03.5Z"))
    paths = [(path, query) for path, query, _ in FakeJupyter.requests]
    assert paths == [("/api/kernels", {"no_track_activity": ["1"]})]
    assert {auth for _, _, auth in FakeJupyter.requests} == {f"token {TOKEN}"}


def test_no_kernel_is_no_activity(jupyter, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeJupyter, "kernels", [])
    assert autostop.read_jupyter(jupyter, token_file(tmp_path)) == (0, None, None)


def test_an_answer_that_is_not_a_list_is_said(jupyter, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeJupyter, "kernels", {"message": "not a list"})
    assert autostop.read_jupyter(jupyter, token_file(tmp_path)) == (None, None, f"Jupyter at {jupyter} unreadable: not a list")


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
    decision = decide(Readings(busy_kernels=busy, jupyter_error=error, processes=[]), state=warned(NOW - HOUR))
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


# --- The command, with fake readers

@pytest.fixture
def box(monkeypatch, tmp_path, capsys):
    """main() with the readers replaced: run(argv, readings, up_since) -> (exit status, output, shutdowns, walls)."""
    config = tmp_path / "autostop.json"
    config.write_text(json.dumps({"minutes": 1, "warn_minutes": 10}))
    state_dir = tmp_path / "state"
    calls = {"shutdown": [], "wall": []}

    def go(argv, readings=None, up_since=None):
        readings = readings or quiet()
        monkeypatch.setattr(autostop, "read_processes", lambda: readings.processes or [])
        monkeypatch.setattr(autostop, "read_terminals", lambda: readings.terminals)
        monkeypatch.setattr(autostop, "read_network", lambda: readings.network_bytes)
        monkeypatch.setattr(autostop, "read_jupyter", lambda url, path: (
            readings.busy_kernels, readings.jupyter_last_activity, readings.jupyter_error))
        monkeypatch.setattr(autostop, "read_gpu", lambda smi: (readings.gpu_utilization, readings.gpu_error))
        monkeypatch.setattr(autostop, "read_system_up", lambda: up_since or autostop.time.time() - HOUR)
        monkeypatch.setattr(autostop, "read_timer_since", lambda timer: None)
        monkeypatch.setattr(autostop, "shutdown", lambda: calls["shutdown"].append("shutdown -h now") or 0)
        monkeypatch.setattr(autostop, "broadcast", lambda message, ttys: calls["wall"].append(message))
        status = autostop.main(["--config", str(config), "--state-dir", str(state_dir),
                                "--runtime-dir", str(tmp_path / "run"), *argv])
        out = capsys.readouterr()
        return status, (out.out + out.err).strip(), calls

    go.state_dir = state_dir
    return go


def test_a_check_that_sees_work_remembers_it_and_does_not_stop(box):
    status, line, calls = box(["check"], quiet(gpu_utilization=[50]))
    assert (status, calls["shutdown"], calls["wall"]) == (0, [], [])
    assert line.startswith("active: ") and "GPU 50% >= 10%" in line
    state = json.loads((box.state_dir / "state.json").read_text())
    assert state["last_active"] == pytest.approx(autostop.time.time(), abs=5)


def test_an_idle_check_warns_every_terminal_then_a_later_one_stops(box):
    hour_ago = autostop.time.time() - HOUR
    status, line, calls = box(["check"], quiet(jupyter_last_activity=hour_ago), up_since=hour_ago)
    assert status == 0 and line.startswith("warning: stopping at ")
    assert calls["shutdown"] == [] and len(calls["wall"]) == 1 and "gpubox-autostop hold 2h" in calls["wall"][0]
    state = json.loads((box.state_dir / "state.json").read_text())
    state["warned"]["at"] -= 2 * MINUTE  # the warning was two minutes ago
    (box.state_dir / "state.json").write_text(json.dumps(state))
    status, line, calls = box(["check"], quiet(jupyter_last_activity=hour_ago), up_since=hour_ago)
    assert line.startswith("stopping: idle for ") and calls["shutdown"] == ["shutdown -h now"]
    assert len(calls["wall"]) == 1  # warned once


def test_a_dry_run_neither_stops_nor_warns_nor_writes(box):
    hour_ago = autostop.time.time() - HOUR
    status, line, calls = box(["check", "--dry-run"], quiet(jupyter_last_activity=hour_ago), up_since=hour_ago)
    assert line.endswith("(dry run)") and calls == {"shutdown": [], "wall": []}
    assert not (box.state_dir / "state.json").exists()


def test_hold_status_and_hold_off(box):
    status, said, _ = box(["hold", "3h"])
    assert status == 0 and said.startswith("Held until ") and "no idle stop for 3 hours" in said
    status, said, _ = box(["status"])
    assert status == 0 and "Held until " in said and "No check has run yet." in said
    status, line, calls = box(["check"], quiet(jupyter_last_activity=None), up_since=autostop.time.time() - HOUR)
    assert line.startswith("held until ") and calls["shutdown"] == []
    status, said, _ = box(["hold", "off"])
    assert status == 0 and said.startswith("No hold")
    status, said, _ = box(["status"])
    assert "Held until" not in said and "Last check, 0 minutes ago: held until " in said
    status, said, _ = box(["hold", "3 days"])
    assert status == 2 and "is not a duration such as 3h" in said
    status, said, _ = box(["hold", "200h"])
    assert status == 2 and "at most 168h" in said and "-e minutes=0" in said


def test_bad_settings_are_named(box, tmp_path):
    (tmp_path / "autostop.json").write_text("{not json")
    status, said, _ = box(["check"])
    assert status == 2 and "is not JSON" in said


def test_a_full_disk_does_not_keep_the_machine_up(box, monkeypatch):
    """The state cannot be written to disk (ENOSPC): it is kept in memory (/run), the warning and the stop come."""
    write = autostop.write_file

    def full_disk(path, text, mode=0o644):
        if str(box.state_dir) in path:
            raise OSError(28, "No space left on device")
        return write(path, text, mode)
    monkeypatch.setattr(autostop, "write_file", full_disk)
    long_ago = autostop.time.time() - 2 * HOUR
    status, line, calls = box(["check"], quiet(jupyter_last_activity=long_ago), up_since=long_ago)
    assert status == 0 and "No space left on device" in line and len(calls["wall"]) == 1
    spare = box.state_dir.parent / "run" / "state.json"
    state = json.loads(spare.read_text())
    state["warned"]["at"] -= 2 * MINUTE  # the warning was two minutes ago
    spare.write_text(json.dumps(state))
    status, line, calls = box(["check"], quiet(jupyter_last_activity=long_ago), up_since=long_ago)
    assert "stopping: idle for " in line and calls["shutdown"] == ["shutdown -h now"] and len(calls["wall"]) == 1


def test_the_hold_file_is_replaced_never_written_through_a_link(tmp_path):
    """The hold's folder belongs to the login user, and root writes there: a link planted there is replaced."""
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    folder = tmp_path / "hold"
    folder.mkdir()
    (folder / "until").symlink_to(target)
    autostop.write_file(str(folder / "until"), "2026-12-01T00:00:00Z\n")
    assert target.read_text() == "keep me\n"
    assert not (folder / "until").is_symlink() and (folder / "until").read_text() == "2026-12-01T00:00:00Z\n"
    assert sorted(p.name for p in folder.iterdir()) == ["until"]


def test_systemds_dynamic_users_are_not_people():
    dynamic = Process(800, 1, 61184, BOOT, 1.0, "/usr/lib/systemd/systemd-oomd")
    assert autostop.work_processes(SYSTEM + [dynamic], 1000) == [p for p in SYSTEM if p.uid == 1000]
    assert autostop.parse_uid_min("UID_MIN 1000\nUID_MAX 60000\n", "UID_MAX", 1) == 60000
