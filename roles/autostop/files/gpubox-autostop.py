#!/usr/bin/python3 -I
"""gpubox-autostop: stop this machine from inside once it has been idle for a while.

Run by the gpubox-autostop.timer every check interval, as root. Each run reads what is going on,
decides, prints one line saying what it decided and why (systemd puts it in the journal), and
runs `shutdown -h now` when the machine has been idle for --minutes. An EC2 instance launched with
instance_initiated_shutdown_behavior=stop is then stopped, not terminated, and no AWS credentials
are needed on the box.

Activity, read at each run:
  - a Jupyter kernel that is busy, from Jupyter Server's REST API (/api/kernels);
  - the latest activity of a kernel or a terminal: the last_activity of each in /api/kernels and
    /api/terminals (kernel messages from running code; terminal input and output). Jupyter's own
    /api/status is not read: its last_activity counts every API call, and an open JupyterLab tab
    polls the API every few seconds, so a forgotten tab would keep the machine up for ever;
  - an SSH session: a login that runs a shell or a command. That is an sshd process titled
    "sshd: USER@pts/N" or "sshd: USER@notty" ("sshd-session: ..." from OpenSSH 9.8) with at least one
    child process (the shell or the command), read from /proc/PID/stat and /proc/PID/cmdline. An
    `ssh -N` tunnel opens no session and runs nothing ("sshd: USER", no child), so a tunnel left open
    on a laptop does not keep the machine up; neither do sshd's listener and "[priv]" processes;
  - a GPU at or above --gpu-threshold percent utilisation (nvidia-smi; no nvidia-smi: no reading).

Idle time is now minus the latest of: when the system came up (start of PID 1, which is also right
in a container), when the timer was started (at boot, and by a configure run that installs it or
changes its settings: setup does not count as idle), the last activity seen by an earlier run (kept
in --state-file) and the latest kernel or terminal activity.

The Jupyter token is read from --token-file (JUPYTER_TOKEN=...) at each run; it is never printed.
Our own API calls do not count as Jupyter activity: both are made with no_track_activity=1.

Standard library only. Exit status 0 after a decision (including "stopping"), 1 when shutdown
failed, 2 on bad arguments. --dry-run decides and prints but neither stops nor writes the state.
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
import time
import urllib.error
import urllib.parse
import urllib.request

# The title sshd gives the per-connection process of a login with a session: "sshd: ubuntu@pts/0" or
# "sshd: ubuntu@notty" (OpenSSH up to 9.7), "sshd-session: ubuntu@pts/0" (9.8 and later).
SSH_SESSION_TITLE = re.compile(r"^sshd(-session)?: \S+@(pts/\d+|notty)")
HTTP_TIMEOUT = 10
NVIDIA_SMI_TIMEOUT = 30


@dataclasses.dataclass
class Readings:
    """What one run saw. None means "could not be read"."""

    busy_kernels: int | None = None  # None: Jupyter not read (see jupyter_error)
    jupyter_last_activity: float | None = None  # Unix time of the latest kernel or terminal activity
    jupyter_error: str | None = None  # why Jupyter could not be read
    ssh_sessions: int = 0
    gpu_utilization: list[int] | None = None  # percent per GPU; None: no GPU reading
    gpu_error: str | None = None  # why there is no GPU reading (None: no nvidia-smi, nothing to say)


@dataclasses.dataclass
class Decision:
    action: str  # "off", "active", "idle" or "stop"
    reason: str  # the line for the journal
    last_active: float | None  # the last activity to remember for the next run
    idle_seconds: float = 0.0


# --- The decision (pure: no clock, no files, no network)

def _plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _minutes(seconds):
    return int(max(0.0, seconds) // 60)


def decide(now, up_since, last_active, readings, minutes, threshold):
    """Decide from the readings; all times are Unix times in seconds.

    now: the current time. up_since: when counting may start at the earliest (the later of: the system
    came up, the timer was started). last_active: the last activity remembered from earlier runs, or
    None. minutes: idle minutes before stopping, 0 for off. threshold: GPU percent that counts as busy.
    """
    if minutes <= 0:
        return Decision("off", "off: autostop_minutes is 0, nothing is checked", last_active)

    gpu = max(readings.gpu_utilization) if readings.gpu_utilization else None
    active = []
    if readings.busy_kernels:
        active.append(_plural(readings.busy_kernels, "busy kernel"))
    if readings.ssh_sessions:
        active.append(_plural(readings.ssh_sessions, "SSH session"))
    if gpu is not None and gpu >= threshold:
        active.append(f"GPU {gpu}% >= {threshold}%")
    if active:
        return Decision("active", "active: " + ", ".join(active), now)

    details = []
    if readings.busy_kernels is None:
        details.append(f"Jupyter not read ({readings.jupyter_error or 'unknown error'})")
    else:
        details.append("no busy kernel")
        if readings.jupyter_last_activity is not None:
            ago = _minutes(now - readings.jupyter_last_activity)
            details.append(f"last kernel or terminal activity {_plural(ago, 'minute')} ago")
    details.append("no SSH session (tunnels alone do not count)")
    if gpu is not None:
        details.append(f"GPU {gpu}% < {threshold}%")
    elif readings.gpu_error:
        details.append(f"no GPU reading ({readings.gpu_error})")
    else:
        details.append("no GPU reading")

    remembered = [t for t in (last_active, readings.jupyter_last_activity) if t is not None]
    new_last_active = min(max(remembered), now) if remembered else None
    candidates = [(up_since, "start-up")]
    if new_last_active is not None:
        candidates.append((new_last_active, "the last activity"))
    since, origin = max(candidates, key=lambda c: c[0])
    idle = max(0.0, now - since)

    if idle >= minutes * 60:
        reason = f"stopping: idle for {_plural(_minutes(idle), 'minute')} ({', '.join(details)})"
        return Decision("stop", reason, new_last_active, idle)
    reason = f"idle {_minutes(idle)} of {_plural(minutes, 'minute')} since {origin}: {', '.join(details)}"
    return Decision("idle", reason, new_last_active, idle)


# --- Parsers (pure)

def count_ssh_sessions(processes):
    """SSH logins that run a shell or a command, over (pid, ppid, cmdline) tuples of the process table.

    A login counts when its per-connection sshd process is titled USER@pts/N or USER@notty and has a
    child (the shell or the command). A bare `ssh -N` tunnel ("sshd: USER", or "USER@notty" once a
    session it opened has ended) has none; sshd's listener and "[priv]" monitor are not titled so.
    """
    parents = {ppid for _, ppid, _ in processes}
    return sum(1 for pid, _, cmdline in processes if pid in parents and SSH_SESSION_TITLE.match(cmdline))


def parse_ppid(stat_text):
    """The parent's PID from /proc/PID/stat (the fields after the last ")": state, ppid, ...)."""
    return int(stat_text[stat_text.rindex(")") + 1:].split()[1])


def parse_time(text):
    """Unix time from an ISO 8601 string such as Jupyter's 2026-11-26T10:02:03.123456Z."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def format_time(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def parse_process_start(stat_text, proc_stat_text, clock_ticks):
    """Unix time a process started, from its /proc/PID/stat (field 22) and /proc/stat's btime."""
    after_name = stat_text[stat_text.rindex(")") + 2:].split()
    start_ticks = int(after_name[19])  # field 22; the fields after "(comm)" start at field 3
    btime = next(int(line.split()[1]) for line in proc_stat_text.splitlines() if line.startswith("btime "))
    return btime + start_ticks / clock_ticks


# --- Readers (each one talks to one thing)

def read_system_up(proc="/proc"):
    """When PID 1 started. In a container /proc/uptime and btime are the host's; PID 1 is the container's."""
    with open(os.path.join(proc, "1", "stat")) as stat, open(os.path.join(proc, "stat")) as proc_stat:
        return parse_process_start(stat.read(), proc_stat.read(), os.sysconf("SC_CLK_TCK"))


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


def read_processes(proc="/proc"):
    """(pid, ppid, cmdline) for each process; cmdline with NULs as spaces (sshd writes its title over argv).

    A process that ends while it is read is left out.
    """
    processes = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc, name, "stat")) as stat:
                ppid = parse_ppid(stat.read())
            with open(os.path.join(proc, name, "cmdline"), "rb") as cmdline:
                title = cmdline.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, ValueError, IndexError):  # gone (ENOENT, ESRCH), or not readable
            continue
        processes.append((int(name), ppid, title))
    return processes


def read_ssh_sessions(proc="/proc"):
    return count_ssh_sessions(read_processes(proc))


def _jupyter_get(url, path, token, query=None):
    full = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    request = urllib.request.Request(full, headers={"Authorization": f"token {token}", "Accept": "application/json"})
    # Jupyter is on this machine: never through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=HTTP_TIMEOUT) as response:
        return json.loads(response.read().decode("utf-8"))


def latest_activity(models):
    """The latest last_activity (Unix time) of the kernels or terminals in an API list, or None."""
    times = []
    for model in models:
        try:
            times.append(parse_time(model["last_activity"]))
        except (KeyError, TypeError, AttributeError, ValueError):
            continue
    return max(times, default=None)


def read_jupyter(url, token_file):
    """(busy kernels, latest kernel or terminal activity as Unix time, error).

    (None, None, why) when Jupyter cannot be read. No terminals API (404: terminals are off) is no
    terminal activity. Both calls carry no_track_activity=1, so they do not count as activity.
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
        try:
            terminals = _jupyter_get(url, "/api/terminals", token, untracked)
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            terminals = []
    except urllib.error.HTTPError as error:
        return None, None, f"Jupyter at {url} answered HTTP {error.code}"
    except urllib.error.URLError as error:
        reason = getattr(error.reason, "strerror", None) or str(error.reason)
        return None, None, f"Jupyter at {url} unreachable: {reason}"
    except (OSError, ValueError) as error:
        return None, None, f"Jupyter at {url} unreadable: {error.__class__.__name__}"
    if not isinstance(kernels, list) or not isinstance(terminals, list):
        return None, None, f"Jupyter at {url} unreadable: not a list"
    busy = sum(1 for kernel in kernels if isinstance(kernel, dict) and kernel.get("execution_state") == "busy")
    models = [model for model in kernels + terminals if isinstance(model, dict)]
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


def read_state(path):
    try:
        with open(path) as handle:
            return parse_time(handle.read())
    except (OSError, ValueError):
        return None


def write_state(path, seconds):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        handle.write(format_time(seconds) + "\n")
    os.replace(temporary, path)


def shutdown():
    """Halt the machine (EC2 stops an instance launched with instance_initiated_shutdown_behavior=stop)."""
    return subprocess.run(["shutdown", "-h", "now"], check=False).returncode


# --- The run

def arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=int, required=True, help="idle minutes before stopping; 0: off")
    parser.add_argument("--gpu-threshold", type=int, default=10, help="GPU percent that counts as busy")
    parser.add_argument("--jupyter-url", default="http://127.0.0.1:8888")
    parser.add_argument("--token-file", default="/etc/gpubox/jupyter-token")
    parser.add_argument("--state-file", default="/var/lib/gpubox/autostop/last-active")
    parser.add_argument("--timer", default="gpubox-autostop.timer", help="timer whose start counts as activity")
    parser.add_argument("--nvidia-smi", default="nvidia-smi")
    parser.add_argument("--dry-run", action="store_true", help="print the decision; do not stop or write the state")
    return parser.parse_args(argv)


def main(argv=None):
    args = arguments(argv)
    if args.minutes <= 0:
        print(decide(time.time(), 0.0, None, Readings(), 0, args.gpu_threshold).reason, flush=True)
        return 0
    busy, jupyter_last, jupyter_error = read_jupyter(args.jupyter_url, args.token_file)
    gpu, gpu_error = read_gpu(args.nvidia_smi)
    readings = Readings(
        busy_kernels=busy, jupyter_last_activity=jupyter_last, jupyter_error=jupyter_error,
        ssh_sessions=read_ssh_sessions(), gpu_utilization=gpu, gpu_error=gpu_error,
    )
    now = time.time()
    up_since = max(t for t in (read_system_up(), read_timer_since(args.timer)) if t is not None)
    last_active = read_state(args.state_file)
    decision = decide(now, up_since, last_active, readings, args.minutes, args.gpu_threshold)
    print(decision.reason + (" (dry run)" if args.dry_run else ""), flush=True)
    if args.dry_run:
        return 0
    # Kept to the second, so an unchanged last activity is not written again.
    remembered = format_time(last_active) if last_active is not None else None
    if decision.last_active is not None and format_time(decision.last_active) != remembered:
        write_state(args.state_file, decision.last_active)
    if decision.action == "stop":
        status = shutdown()
        if status != 0:
            print(f"shutdown -h now failed with exit status {status}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
