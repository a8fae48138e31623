#!/usr/bin/env python3
"""Time the AWS half of gpubox against moto server: a first launch, an identical re-run, status, teardown.

Usage: .venv/bin/python scripts/benchmark-launch.py [--runs N]
Prints the median wall-clock seconds of each step. A benchmark, not a test: nothing here asserts a time.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/aws"))
from conftest import _free_port  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    port = _free_port()
    moto = subprocess.Popen([str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    home = tempfile.mkdtemp(prefix="gpubox-bench-")
    env = {"PATH": os.environ["PATH"], "HOME": home, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    settings = json.dumps({"type": "g5.xlarge", "ami": "ami-1e749f67", "ssh_cidr": "203.0.113.7/32", "configure": False})
    steps = {
        "first launch": ["launch.yml", "-e", settings],
        "identical re-run": ["launch.yml", "-e", settings],
        "status": ["status.yml"],
        "teardown": ["teardown.yml", "-e", '{"confirm": true, "delete_data": true}'],
    }
    timings = {step: [] for step in steps}
    try:
        for _ in range(args.runs):
            for step, cmd in steps.items():
                start = time.perf_counter()
                subprocess.run([str(bindir / "ansible-playbook"), *cmd], cwd=REPO, env=env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
                timings[step].append(time.perf_counter() - start)
    finally:
        moto.terminate()
    for step, seconds in timings.items():
        print(f"{step:18s} median {statistics.median(seconds):6.1f} s   runs: {', '.join(f'{s:.1f}' for s in seconds)}")


if __name__ == "__main__":
    main()
