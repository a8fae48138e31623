#!/usr/bin/python3 -I
"""gpubox-autostop: stop this machine from inside once it has been idle for a while, or has run too long.

  gpubox-autostop status        idle for how long, when it stops and why, the last readings
  gpubox-autostop hold 3h       do not stop for idleness for 3 hours (90m, 1h30m); "hold off" ends it
  gpubox-autostop check         one check (the systemd timer runs it every check interval, as root)

Each check reads what is going on, decides, prints one line saying what it decided and why (systemd
puts it in the journal), warns every terminal (wall) before it stops, and runs `shutdown -h now`
when the time has come. An EC2 instance launched with instance_initiated_shutdown_behavior=stop is
then stopped, not terminated, and no AWS credentials are needed on the box.

Work, read at each check (rates over the time since the previous check):
  - CPU: the CPU time used by the processes of people rather than the system, in percent of one
    core: those of login users (uid >= UID_MIN: shells, tmux, screen and nohup jobs, Jupyter and its
    kernels), everything started from a login (its audit login uid is set: `sudo -i` and `sudo nohup`
    jobs too, even after the login ended), everything under an SSH login, and containers' processes
    (under containerd-shim); sshd's own processes are left out (forwarding a tunnel is not work);
  - network: bytes received and sent on every interface but loopback (a download, an upload);
  - GPU: the busiest GPU's utilisation (nvidia-smi; no nvidia-smi: no reading).
Work at or above its threshold counts as activity. So do, as moments of activity: the latest input
typed into any terminal (the access time of /dev/pts/N, as `w` shows it: SSH logins, JupyterLab's
terminals, tmux and mosh; output alone, `watch` or `htop`, is not input), and the latest kernel
activity Jupyter saw (/api/kernels; not /api/status, which counts every API call, so a forgotten
JupyterLab tab would keep the machine up). An SSH connection or shell that is merely open is not
activity, nor is an `ssh -N` tunnel. A busy Jupyter kernel holds the machine up while nothing else
happens for up to hung_minutes (a cell waiting for input() or stuck looks the same as one waiting on a
slow server); after that it counts as hung, and the journal says so.

Idle time is now minus the latest of: start-up (PID 1), the timer's start (a configure run that changes
the settings restarts it), the end of a hold, and the last activity (kept in the state file).
A stop is announced warn_minutes before it (less when minutes is shorter), on every terminal and in
the journal, and never comes sooner after the warning. max_hours stops the machine after that many
hours since start-up, whatever it is doing; a hold does not postpone it.

Settings come from --config (JSON, written by the autostop role). The Jupyter token is read from
token_file (JUPYTER_TOKEN=...) at each check and never printed; our API calls carry
no_track_activity=1, so they count as nothing. Standard library only. Exit status 0 after a
decision (including "stopping"), 1 when shutdown failed, 2 on bad settings or arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

CONFIG_FILE = "/etc/gpubox/autostop.json"
STATE_DIR = "/var/lib/gpubox/autostop"
# Where the state goes when the disk is full (systemd's RuntimeDirectory=, in memory).
RUNTIME_DIR = "/run/gpubox-autostop"
TIMER = "gpubox-autostop.timer"
# The title sshd gives the per-connection process of a login with a session: "sshd: ubuntu@pts/0" or
# "sshd: ubuntu@notty" (OpenSSH up to 9.7), "sshd-session: ubuntu@pts/0" (9.8 and later).
# A multiplexed connection's sessions share one process: "sshd: ubuntu@pts/0,pts/3".
SSH_SESSION_TITLE = re.compile(r"^sshd(?:-session)?: \S+@(pts/\d+(?:,pts/\d+)*|notty)")
# Every process of sshd itself: the listener, "[priv]" monitors, sessions, bare tunnels ("sshd: USER").
SSHD_TITLE = re.compile(r"^(?:/usr/sbin/)?sshd(?:-session|-auth)?(?::| |$)")
# A container's processes run under its shim (Docker, containerd, nerdctl).
CONTAINER_SHIM = re.compile(r"^\S*containerd-shim")
# The audit login uid of a process no login started.
NO_LOGIN_UID = 4294967295
HTTP_TIMEOUT = 10
NVIDIA_SMI_TIMEOUT = 30
NOBODY_UID = 65534
MAX_HOLD_HOURS = 24 * 7


@dataclasses.dataclass
class Settings:
    minutes: int = 60  # idle minutes before stopping; 0: no idle stop
    warn_minutes: int = 10  # warning before a stop; 0: none
    hung_minutes: int = 30  # a busy kernel with no work this long counts as hung
    max_hours: float = 0.0  # stop after this many hours since start-up whatever happens; 0: no cap
    gpu_threshold: int = 10  # percent of the busiest GPU
    cpu_threshold: int = 10  # percent of one core, used by people's processes
    network_kib_per_s: int = 100  # received plus sent, loopback left out
    jupyter_url: str = "http://127.0.0.1:8888"
    token_file: str = "/etc/gpubox/jupyter-token"
    hold_file: str = ""  # where the hold is kept ("": hold-until in the state directory)
    uid_min: int = 1000
    uid_max: int = 60000


@dataclasses.dataclass
class Process:
    pid: int
    ppid: int
    uid: int
    start: float  # Unix time it started
    cpu_seconds: float  # user + system time, its own and its waited-for children's
    title: str  # cmdline with NULs as spaces
    login_uid: int | None = None  # the audit login uid (/proc/PID/loginuid); None: no login started it


@dataclasses.dataclass
class Readings:
    """What one check saw. None means "could not be read"."""

    busy_kernels: int | None = None  # None: Jupyter not read (see jupyter_error)
    jupyter_last_activity: float | None = None  # Unix time of the latest kernel activity
    jupyter_error: str | None = None
    ssh_logins: int = 0  # SSH logins with a terminal or a command (not bare tunnels)
    terminals: dict = dataclasses.field(default_factory=dict)  # "pts/N": Unix time of its latest input
    processes: list | None = None  # Process; None: not read
    network_bytes: int | None = None  # received plus sent since boot, loopback left out
    gpu_utilization: list | None = None  # percent per GPU; None: no GPU reading
    gpu_error: str | None = None  # why there is no GPU reading (None: no nvidia-smi, nothing to say)


@dataclasses.dataclass
class Decision:
    action: str  # "off", "active", "held", "idle", "warn" or "stop"
    reason: str  # the line for the journal
    state: dict  # what the next check needs, and what `status` shows
    idle_seconds: float = 0.0
    stops_at: float | None = None  # when it stops if nothing happens meanwhile
    message: str | None = None  # the warning for every terminal


# --- Small pure helpers

def plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def whole_minutes(seconds):
    return int(max(0.0, seconds) // 60)


def clock(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%H:%M UTC")


def format_time(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    """Unix time from an ISO 8601 string such as Jupyter's 2026-11-26T10:02:03.123456Z."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def parse_duration(text):
    """Seconds from 3h, 90m, 90min, 1h30m or a bare number of minutes; ValueError otherwise."""
    match = re.fullmatch(r"\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*", text or "")
    if text and text.strip().isdigit():
        return int(text) * 60
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration such as 3h, 90m or 1h30m")
    return int(match.group(1) or 0) * 3600 + int(match.group(2) or 0) * 60


def describe_duration(seconds):
    minutes = whole_minutes(seconds + 59)
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{plural(hours, 'hour')} {plural(rest, 'minute')}"
    return plural(hours, "hour") if hours else plural(rest, "minute")


# --- What counts as people's work (pure)

def is_user(process, uid_min, uid_max=60000):
    """A login user's process: uid from UID_MIN to UID_MAX (not nobody, not systemd's DynamicUser services)."""
    return uid_min <= process.uid <= uid_max and process.uid != NOBODY_UID


def work_processes(processes, uid_min, uid_max=60000):
    """The processes whose CPU use is people's work: login users', those a login started (whatever they became
    since: sudo, a reparented nohup job), those under an SSH login, and containers'.

    sshd's own processes are left out (a tunnel's forwarding is not work; its login's children are).
    """
    by_pid = {p.pid: p for p in processes}
    counted = []
    for process in processes:
        if SSHD_TITLE.match(process.title):
            continue
        if is_user(process, uid_min, uid_max) or process.login_uid is not None:
            counted.append(process)
            continue
        parent, seen = by_pid.get(process.ppid), set()
        while parent is not None and parent.pid not in seen:
            seen.add(parent.pid)
            if (SSH_SESSION_TITLE.match(parent.title) or CONTAINER_SHIM.match(parent.title)
                    or (is_user(parent, uid_min, uid_max) and not SSHD_TITLE.match(parent.title))):
                counted.append(process)
                break
            parent = by_pid.get(parent.ppid)
    return counted


def cpu_use(previous, previous_time, now, processes):
    """(percent of one core, busiest process title) over now - previous_time, from CPU seconds per process.

    previous maps "pid@start" to CPU seconds at previous_time. A process started since then counts whole.
    """
    window = now - previous_time
    used, busiest = 0.0, (0.0, "")
    for process in processes:
        before = previous.get(f"{process.pid}@{process.start:.0f}")
        if before is None:
            before = 0.0 if process.start >= previous_time - 1 else process.cpu_seconds
        delta = max(0.0, process.cpu_seconds - before)
        used += delta
        busiest = max(busiest, (delta, process.title))
    name = busiest[1].split(" ")[0].rsplit("/", 1)[-1] if busiest[1] else ""
    return 100.0 * used / window, name


def cpu_sample(processes):
    return {f"{p.pid}@{p.start:.0f}": round(p.cpu_seconds, 2) for p in processes}


# --- The decision (pure: no clock, no files, no network)

def decide(now, up_since, boot, hold_until, state, readings, settings):
    """Decide from the readings; all times are Unix times in seconds.

    up_since: when idle counting may start at the earliest (the later of: start-up, the timer's start).
    boot: start-up, for max_hours. hold_until: the end of a hold, or None. state: what the previous
    check left (or {}). settings: a Settings.
    """
    s = settings
    state = state or {}
    processes = work_processes(readings.processes or [], s.uid_min, s.uid_max)
    sample = {"time": now, "cpu": cpu_sample(processes), "network": readings.network_bytes}
    new_state = {"sample": sample, "last_active": state.get("last_active"), "warned": None}
    if s.minutes <= 0 and s.max_hours <= 0:
        return finish(Decision("off", "off: autostop_minutes and max_hours are 0, nothing is checked", new_state), now)

    # Work over the time since the previous check.
    work, calm = [], []
    previous = state.get("sample") or {}
    # Rates only within this boot (counters start again at boot) and forward in time.
    window = now - previous.get("time", 0)
    rates = 0 < window and previous.get("time", 0) >= boot
    if rates and readings.processes is not None:
        percent, busiest = cpu_use(previous.get("cpu") or {}, previous["time"], now, processes)
        (work if percent >= s.cpu_threshold else calm).append(
            f"CPU {percent:.0f}% {'>=' if percent >= s.cpu_threshold else '<'} {s.cpu_threshold}%"
            + (f" ({busiest})" if busiest and percent >= s.cpu_threshold else ""))
    before = previous.get("network")
    if rates and readings.network_bytes is not None and before is not None and readings.network_bytes >= before:
        kib = (readings.network_bytes - before) / 1024 / window
        (work if kib >= s.network_kib_per_s else calm).append(
            f"network {kib:.0f} KiB/s {'>=' if kib >= s.network_kib_per_s else '<'} {s.network_kib_per_s} KiB/s")
    if not rates:
        calm.append("CPU and network from the next check on")
    gpu = max(readings.gpu_utilization) if readings.gpu_utilization else None
    if gpu is not None:
        (work if gpu >= s.gpu_threshold else calm).append(
            f"GPU {gpu}% {'>=' if gpu >= s.gpu_threshold else '<'} {s.gpu_threshold}%")
    elif readings.gpu_error:
        calm.append(f"no GPU reading ({readings.gpu_error})")

    # Moments of activity: input typed into a terminal, Jupyter's kernel activity.
    typed = max(readings.terminals.values(), default=None)
    moments = [t for t in (state.get("last_active"), readings.jupyter_last_activity, typed) if t is not None]
    last_active = now if work else (min(max(moments), now) if moments else None)
    new_state["last_active"] = last_active
    if readings.busy_kernels is None:
        calm.append(f"Jupyter not read ({readings.jupyter_error or 'unknown error'})")
    elif readings.jupyter_last_activity is not None:
        calm.append(f"last kernel activity {plural(whole_minutes(now - readings.jupyter_last_activity), 'minute')} ago")
    if readings.ssh_logins:
        calm.append(plural(readings.ssh_logins, "SSH login"))
    if typed is not None:
        calm.append(f"last terminal input {plural(whole_minutes(now - typed), 'minute')} ago")

    held = hold_until is not None and hold_until > now
    candidates = [(up_since, "start-up")]
    if last_active is not None:
        candidates.append((last_active, "the last activity"))
    if hold_until is not None and not held:
        candidates.append((hold_until, "the end of the hold"))
    since, origin = max(candidates, key=lambda c: c[0])
    idle = max(0.0, now - since)
    busy = readings.busy_kernels or 0
    hung = busy and not work and idle >= s.hung_minutes * 60
    if busy and not work:
        calm.append(f"{plural(busy, 'busy kernel')} with no CPU or GPU work for {plural(whole_minutes(idle), 'minute')}"
                    + (": counted as hung" if hung else f" (counted as hung after {s.hung_minutes})"))

    # When it stops if nothing happens, and why.
    due = []
    if s.minutes > 0 and not held and not work:
        quiet_for = max(s.minutes, s.hung_minutes if busy else 0)
        due.append((since + quiet_for * 60, f"idle:{since:.0f}", s.minutes * 60, "idle"))
    if s.max_hours > 0:
        due.append((boot + s.max_hours * 3600, f"cap:{boot:.0f}", s.max_hours * 3600, "cap"))
    details = ", ".join(work + calm)
    if not due:
        action, reason = ("held", f"held until {format_time(hold_until)}") if held else ("active", "active")
        decision = Decision(action, f"{reason}: {details}" if details else reason, new_state, idle)
        return finish(decision, now, since)
    stops_at, key, span, kind = min(due)
    warn = min(s.warn_minutes * 60, span)
    warned = state.get("warned") or {}
    message = None
    if warn > 0 and stops_at - now <= warn:
        if warned.get("key") != key:
            warned = {"key": key, "at": now}
            message = warning(kind, max(stops_at, now + warn), since, s)
        new_state["warned"] = warned
        stops_at = max(stops_at, warned["at"] + warn)
    if now >= stops_at:
        why = (f"running for {s.max_hours:g} hours (max_hours)" if kind == "cap"
               else f"idle for {plural(whole_minutes(idle), 'minute')}")
        return finish(Decision("stop", f"stopping: {why} ({details})", new_state, idle, stops_at), now, since)
    if message:
        line = f"warning: stopping at {format_time(stops_at)} ({'max_hours' if kind == 'cap' else 'idle'}): {details}"
        return finish(Decision("warn", line, new_state, idle, stops_at, message), now, since)
    if work:
        action, line = "active", f"active: {details}"
    elif held:
        action, line = "held", f"held until {format_time(hold_until)}: {details}"
    else:
        limit = plural(s.minutes, "minute") if s.minutes > 0 else "no idle stop"
        action, line = "idle", f"idle {whole_minutes(idle)} of {limit} since {origin}: {details}"
    return finish(Decision(action, line, new_state, idle, stops_at), now, since)


def warning(kind, stops_at, since, s):
    """The text every terminal gets before a stop."""
    if kind == "cap":
        return (f"gpubox auto-stop: this machine stops at {clock(stops_at)}: it has run for max_hours={s.max_hours:g} "
                "hours. A hold does not change that; to change the cap, run autostop.yml with -e max_hours=... "
                "from your computer. Save your work.")
    return (f"gpubox auto-stop: this machine stops at {clock(stops_at)}: nothing has happened on it since "
            f"{clock(since)} (no CPU, network or GPU work, no typing in a terminal, no notebook activity). "
            "To keep it up, type in a terminal, or run: gpubox-autostop hold 2h")


def finish(decision, now, since=None):
    decision.state["check"] = {
        "time": now, "action": decision.action, "reason": decision.reason,
        "since": since, "stops_at": decision.stops_at,
    }
    return decision


def status_lines(now, settings, state, hold_until):
    """What `gpubox-autostop status` prints, from the settings, the last check's state and the hold (pure)."""
    s = settings
    lines = []
    if s.minutes > 0:
        warn = f", with a warning {plural(min(s.warn_minutes, s.minutes), 'minute')} before" if s.warn_minutes else ""
        lines.append(f"Auto-stop: after {plural(s.minutes, 'idle minute')}{warn}.")
    else:
        lines.append("Auto-stop: off (autostop_minutes is 0).")
    lines.append(f"Cap: stops {s.max_hours:g} hours after start-up whatever it is doing (max_hours)."
                 if s.max_hours > 0 else "Cap: none (max_hours is 0).")
    if hold_until is not None and hold_until > now:
        lines.append(f"Held until {format_time(hold_until)} ({describe_duration(hold_until - now)} from now): "
                     "no idle stop until then. `gpubox-autostop hold off` ends the hold.")
    check = (state or {}).get("check")
    if s.minutes <= 0 and s.max_hours <= 0:
        return lines
    if not check:
        lines.append("No check has run yet.")
        return lines
    if check.get("since") is not None and check["action"] not in ("active", "off"):
        lines.append(f"Idle for: {plural(whole_minutes(now - check['since']), 'minute')} "
                     f"(since {format_time(check['since'])}).")
    elif check["action"] == "active":
        lines.append("Idle for: 0 minutes (in use at the last check).")
    if check.get("stops_at"):
        left = check["stops_at"] - now
        lines.append(f"Stops at: {format_time(check['stops_at'])}"
                     + (f" (in {describe_duration(left)})" if left > 0 else " (now)") + ", if nothing happens meanwhile.")
    elif s.minutes > 0 or s.max_hours > 0:
        lines.append("Stops at: not scheduled while it is in use or held.")
    lines.append(f"Last check, {plural(whole_minutes(now - check['time']), 'minute')} ago: {check['reason']}")
    return lines


# --- Parsers (pure)

def parse_stat(stat_text):
    """(ppid, CPU ticks: utime + stime + cutime + cstime, start ticks after boot) from /proc/PID/stat."""
    fields = stat_text[stat_text.rindex(")") + 2:].split()  # fields from 3 (state) on
    return int(fields[1]), sum(int(fields[i]) for i in (11, 12, 13, 14)), int(fields[19])


def parse_boot_time(proc_stat_text):
    return next(int(line.split()[1]) for line in proc_stat_text.splitlines() if line.startswith("btime "))


def parse_network_bytes(net_dev_text):
    """Received plus sent bytes of every interface but loopback, from /proc/net/dev."""
    total = 0
    for line in net_dev_text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == "lo" or not counters.split():
            continue
        values = counters.split()
        total += int(values[0]) + int(values[8])
    return total


def parse_token(text):
    """The token from the token file's JUPYTER_TOKEN=... line (a bare token is accepted too)."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("JUPYTER_TOKEN="):
            return line.split("=", 1)[1].strip().strip("'\"")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return lines[0] if len(lines) == 1 and "=" not in lines[0] else ""


def parse_gpu_utilization(text):
    """Percent per GPU from `nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits`.

    Lines that are not numbers ([N/A], [Not Supported]) are left out.
    """
    values = []
    for line in text.splitlines():
        try:
            values.append(int(float(line.strip())))
        except ValueError:
            continue
    return values


def parse_uid_min(login_defs_text, key="UID_MIN", default=1000):
    for line in login_defs_text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return default


def ssh_sessions(processes):
    """The SSH logins that run a shell or a command: an sshd process titled USER@pts/N or USER@notty with a child.

    A bare `ssh -N` tunnel ("sshd: USER", or "USER@notty" once a session it opened has ended) has none;
    sshd's listener and "[priv]" monitor are not titled so. Returns (sshd pid, "pts/N" or None) pairs.
    """
    parents = {p.ppid for p in processes}
    return [(p.pid, None if m.group(1) == "notty" else m.group(1))
            for p in processes if p.pid in parents and (m := SSH_SESSION_TITLE.match(p.title))]


# --- Readers (each one talks to one thing)

def read_processes(proc="/proc"):
    """Every process as a Process; one that ends while it is read is left out."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(os.path.join(proc, "stat")) as proc_stat:
        boot = parse_boot_time(proc_stat.read())
    processes = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            uid = os.stat(os.path.join(proc, name)).st_uid
            with open(os.path.join(proc, name, "stat")) as stat:
                ppid, cpu, start = parse_stat(stat.read())
            with open(os.path.join(proc, name, "cmdline"), "rb") as cmdline:
                title = cmdline.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, ValueError, IndexError):  # gone (ENOENT, ESRCH), or not readable
            continue
        processes.append(Process(int(name), ppid, uid, boot + start / ticks, cpu / ticks, title,
                                 read_login_uid(os.path.join(proc, name, "loginuid"))))
    return processes


def read_login_uid(path):
    """The audit login uid in path, or None: not set (no login started the process), or not readable."""
    try:
        with open(path) as handle:
            value = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return None if value == NO_LOGIN_UID else value


def read_terminals(dev="/dev"):
    """{"pts/N": its access time}: when input was last read from each terminal (what `w` shows as IDLE).

    The kernel moves a terminal's access time when input is read from it, and only then (output moves its
    modification time): SSH logins, JupyterLab's terminals, tmux panes and mosh sessions are all /dev/pts/N.
    """
    terminals = {}
    try:
        names = os.listdir(os.path.join(dev, "pts"))
    except OSError:
        return terminals
    for name in names:
        if name.isdigit():
            try:
                terminals[f"pts/{name}"] = os.stat(os.path.join(dev, "pts", name)).st_atime
            except OSError:
                continue
    return terminals


def read_system_up(proc="/proc"):
    """When PID 1 started. In a container /proc/uptime and btime are the host's; PID 1 is the container's."""
    with open(os.path.join(proc, "1", "stat")) as stat, open(os.path.join(proc, "stat")) as proc_stat:
        start = parse_stat(stat.read())[2]
        return parse_boot_time(proc_stat.read()) + start / os.sysconf("SC_CLK_TCK")


def read_timer_since(timer):
    """Unix time the systemd timer was last started, or None."""
    try:
        result = subprocess.run(
            ["systemctl", "show", "--property=ActiveEnterTimestampMonotonic", "--value", timer],
            capture_output=True, text=True, timeout=30, check=False,
        )
        since_boot = int(result.stdout.strip() or 0) / 1e6
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0 or since_boot <= 0:
        return None
    return time.time() - (time.monotonic() - since_boot)


def read_network(path="/proc/net/dev"):
    try:
        with open(path) as handle:
            return parse_network_bytes(handle.read())
    except (OSError, ValueError, IndexError):
        return None


def read_uid_range(path="/etc/login.defs"):
    """(UID_MIN, UID_MAX) of login users."""
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError:
        return 1000, 60000
    return parse_uid_min(text), parse_uid_min(text, "UID_MAX", 60000)


def _jupyter_get(url, path, token, query=None):
    full = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    request = urllib.request.Request(full, headers={"Authorization": f"token {token}", "Accept": "application/json"})
    # Jupyter is on this machine: never through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=HTTP_TIMEOUT) as response:
        return json.loads(response.read().decode("utf-8"))


def latest_activity(models):
    """The latest last_activity (Unix time) of the kernels in an API list, or None."""
    times = []
    for model in models:
        try:
            times.append(parse_time(model["last_activity"]))
        except (KeyError, TypeError, AttributeError, ValueError):
            continue
    return max(times, default=None)


def read_jupyter(url, token_file):
    """(busy kernels, latest kernel activity as Unix time, error).

    (None, None, why) when Jupyter cannot be read. The call carries no_track_activity=1, so it does not count
    as activity. Terminals are not read here: their last_activity moves with their output too (a `watch` left
    open in a tab), and what is typed into them is read from their /dev/pts/N instead.
    """
    try:
        with open(token_file) as handle:
            token = parse_token(handle.read())
    except OSError as error:
        return None, None, f"no token file {token_file}: {error.strerror}"
    if not token:
        return None, None, f"no JUPYTER_TOKEN in {token_file}"
    untracked = {"no_track_activity": "1"}
    try:
        kernels = _jupyter_get(url, "/api/kernels", token, untracked)
    except urllib.error.HTTPError as error:
        return None, None, f"Jupyter at {url} answered HTTP {error.code}"
    except urllib.error.URLError as error:
        reason = getattr(error.reason, "strerror", None) or str(error.reason)
        return None, None, f"Jupyter at {url} unreachable: {reason}"
    except (OSError, ValueError) as error:
        return None, None, f"Jupyter at {url} unreadable: {error.__class__.__name__}"
    if not isinstance(kernels, list):
        return None, None, f"Jupyter at {url} unreadable: not a list"
    models = [kernel for kernel in kernels if isinstance(kernel, dict)]
    busy = sum(1 for kernel in models if kernel.get("execution_state") == "busy")
    return busy, latest_activity(models), None


def read_gpu(nvidia_smi="nvidia-smi"):
    """(percent per GPU, error): (None, None) without nvidia-smi, (None, why) when it fails."""
    try:
        result = subprocess.run(
            [nvidia_smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT, check=False,
        )
    except FileNotFoundError:
        return None, None
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"nvidia-smi failed: {error.__class__.__name__}"
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()
        return None, f"nvidia-smi failed: {lines[-1][:120] if lines else 'exit status ' + str(result.returncode)}"
    values = parse_gpu_utilization(result.stdout)
    return (values, None) if values else (None, "nvidia-smi gave no utilisation")


def read_settings(path):
    """Settings from the JSON config file; ValueError naming the problem."""
    try:
        with open(path) as handle:
            values = json.load(handle)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    known = {field.name: field for field in dataclasses.fields(Settings)}
    settings = Settings()
    for key, value in values.items():
        if key not in known:
            continue
        kind = type(getattr(settings, key))
        if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{path}: {key} must be a number, 0 or more, not {value!r}")
        setattr(settings, key, kind(value) if kind is not str else str(value))
    return settings


def read_json(path):
    try:
        with open(path) as handle:
            value = json.load(handle)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def read_hold(path):
    try:
        with open(path) as handle:
            return parse_time(handle.read())
    except (OSError, ValueError):
        return None


def write_file(path, text, mode=0o644):
    """Replace path with text in one step, so a reader never sees half of it. The temporary file is new (never one
    that is there already, nor what a link there points to): the hold's folder is the login user's."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".gpubox-")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise


def logged_in_terminals():
    """The terminals of logins that utmp lists (`who`): those wall reaches."""
    try:
        result = subprocess.run(["who"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[1] for line in result.stdout.splitlines() if len(line.split()) > 1}


def broadcast(message, ttys, dev="/dev"):
    """The message to every terminal: wall to the logins utmp lists, and straight to every other terminal
    (JupyterLab's terminals, tmux panes), or to all of them when wall fails."""
    reached = set()
    try:
        if subprocess.run(["wall"], input=message + "\n", text=True, capture_output=True, timeout=30,
                          check=False).returncode == 0:
            reached = logged_in_terminals()
    except (OSError, subprocess.TimeoutExpired):
        pass
    for tty in ttys:
        if tty in reached:
            continue
        try:  # never blocks on a terminal nobody reads, never becomes the check's controlling terminal
            descriptor = os.open(os.path.join(dev, tty), os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(descriptor, f"\r\n{message}\r\n".encode())
        except OSError:
            pass
        finally:
            os.close(descriptor)


def shutdown():
    """Halt the machine (EC2 stops an instance launched with instance_initiated_shutdown_behavior=stop)."""
    return subprocess.run(["shutdown", "-h", "now"], check=False).returncode


# --- The commands

def hold_path(args, settings):
    return settings.hold_file or os.path.join(args.state_dir, "hold-until")


def check(args, settings):
    hold_file = hold_path(args, settings)
    state_file = os.path.join(args.state_dir, "state.json")
    if settings.minutes <= 0 and settings.max_hours <= 0:
        print("off: autostop_minutes and max_hours are 0, nothing is checked", flush=True)
        return 0
    processes = read_processes()
    busy, jupyter_last, jupyter_error = read_jupyter(settings.jupyter_url, settings.token_file)
    gpu, gpu_error = read_gpu(args.nvidia_smi)
    readings = Readings(
        busy_kernels=busy, jupyter_last_activity=jupyter_last, jupyter_error=jupyter_error,
        ssh_logins=len(ssh_sessions(processes)), terminals=read_terminals(), processes=processes,
        network_bytes=read_network(), gpu_utilization=gpu, gpu_error=gpu_error,
    )
    now = time.time()
    boot = read_system_up()
    up_since = max(t for t in (boot, read_timer_since(args.timer)) if t is not None)
    spare_file = os.path.join(args.runtime_dir, "state.json")
    state = max((read_json(state_file), read_json(spare_file)),
                key=lambda s: (s.get("check") or {}).get("time") or 0)  # the newer, if the disk was full
    decision = decide(now, up_since, boot, read_hold(hold_file), state, readings, settings)
    print(decision.reason + (" (dry run)" if args.dry_run else ""), flush=True)
    if args.dry_run:
        return 0
    try:  # a full disk must not keep the machine up: the state goes to memory, and the stop comes anyway
        write_file(state_file, json.dumps(decision.state) + "\n")
    except OSError as error:
        print(f"could not write {state_file} ({error.strerror}): keeping the state in {spare_file}", flush=True)
        try:
            write_file(spare_file, json.dumps(decision.state) + "\n")
        except OSError:
            pass
    if decision.message:
        broadcast(decision.message, sorted(readings.terminals))
    if decision.action == "stop":
        status = shutdown()
        if status != 0:
            print(f"shutdown -h now failed with exit status {status}", flush=True)
            return 1
    return 0


def status(args, settings):
    state = read_json(os.path.join(args.state_dir, "state.json"))
    print("\n".join(status_lines(time.time(), settings, state, read_hold(hold_path(args, settings)))))
    return 0


def hold(args, settings):
    hold_file = hold_path(args, settings)
    if args.duration.strip().lower() in ("off", "0", "none"):
        seconds = 0
    else:
        try:
            seconds = parse_duration(args.duration)
        except ValueError as error:
            print(f"gpubox-autostop hold: {error}; `hold off` ends a hold.", file=sys.stderr)
            return 2
        if seconds > MAX_HOLD_HOURS * 3600:
            print(f"gpubox-autostop hold: at most {MAX_HOLD_HOURS}h; to switch idle auto-stop off, run autostop.yml "
                  "with -e minutes=0 from your computer.", file=sys.stderr)
            return 2
    # A hold that ends (now, with "off") restarts the idle count, like the end of any hold.
    until = time.time() + seconds
    try:  # the login user's folder (the role's autostop_hold_user); anyone else needs root
        write_file(hold_file, format_time(until) + "\n")
    except PermissionError:
        if os.geteuid() == 0:
            raise
        os.execvp("sudo", ["sudo", "--", os.path.abspath(sys.argv[0]), *sys.argv[1:]])
    if seconds == 0:
        print("No hold: the machine stops after its idle time again, counted from now.")
        return 0
    print(f"Held until {format_time(until)}: no idle stop for {describe_duration(seconds)}. "
          + ("max_hours still applies. " if settings.max_hours > 0 else "")
          + "`gpubox-autostop hold off` ends the hold.")
    return 0


def arguments(argv):
    parser = argparse.ArgumentParser(prog="gpubox-autostop", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--config", default=CONFIG_FILE, help="settings (JSON)")
    parser.add_argument("--state-dir", default=STATE_DIR)
    parser.add_argument("--runtime-dir", default=RUNTIME_DIR, help="where the state goes when the disk is full")
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("check", help="check once, warn and stop when the time has come")
    one.add_argument("--dry-run", action="store_true", help="print the decision; do not stop, warn or write the state")
    one.add_argument("--timer", default=TIMER, help="timer whose start counts as activity")
    one.add_argument("--nvidia-smi", default="nvidia-smi")
    commands.add_parser("status", help="idle for how long, when it stops and why")
    held = commands.add_parser("hold", help="no idle stop for a while: 3h, 90m, 1h30m; off ends it")
    held.add_argument("duration")
    return parser.parse_args(argv)


def main(argv=None):
    args = arguments(argv)
    try:
        settings = read_settings(args.config)
    except ValueError as error:
        print(f"gpubox-autostop: {error}", file=sys.stderr)
        return 2
    settings.uid_min, settings.uid_max = read_uid_range()
    command = args.command or "status"
    return {"check": check, "status": status, "hold": hold}[command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
