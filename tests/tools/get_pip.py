"""Stand-in for ansible-test's pip bootstrap script (get-pip.py, from a host these machines cannot reach).

ansible-test runs it with a new virtualenv's Python and get-pip's arguments (pip's install options, the packages,
and --no-setuptools / --no-wheel): it bootstraps pip from the wheel Python ships (ensurepip, no network), then has
that pip install what was asked from the package index. tests/tools/ansible-test-sanity.sh puts it where ansible-test
looks first (~/.ansible/test/cache/get_pip_<version>.py) for its run only.
"""

import subprocess
import sys

if __name__ == "__main__":
    asked = sys.argv[1:]
    extra = [name for name in ("setuptools", "wheel") if f"--no-{name}" not in asked]
    options = [arg for arg in asked if arg not in ("--no-setuptools", "--no-wheel")]
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
    sys.exit(subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *options, *extra]).returncode)
