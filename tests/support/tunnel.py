"""An SSH tunnel left running during a test, and JupyterLab answering through it."""

import contextlib
import subprocess
import time
import urllib.request

import pytest


@contextlib.contextmanager
def background(argv):
    """A command left running (the tunnel), stopped afterwards."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc):
    """SIGTERM, then SIGKILL: ssh once outlived SIGTERM for over 10 s on a loaded CI machine."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        printed = proc.stdout.read() if proc.stdout else "(see its log)"
        print(f"{proc.args} outlived SIGTERM for 10 s and was killed; it printed: {printed}")


def jupyter_answers(url, proc, timeout=30):
    """Wait until JupyterLab answers through the tunnel at url; fail with ssh's output if the tunnel died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the tunnel exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer at {url} within {timeout} s")
