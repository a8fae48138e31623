"""The python_envs role's GPU-build checks, for real, on a systemd container (no GPU: the compute capability is given,
as configure gives the catalog's).

- An environment whose wheels (by the preset's gpu_archs) do not run on the GPU, and has no build that does, is
  refused before anything is installed: no environment directory appears.
- After pip installs an environment, its gpu_arch_probe is run with the environment's python and what it prints is
  checked against the GPU: a GPU the wheels lack stops the run with the reason, and leaves no install marker, so the
  next run checks again; a GPU they have passes, and a second run changes nothing.
- A GPU the preset's wheels lack gets the first build that covers it: its packages from its own index first, the
  rest after; back on a GPU the preset's wheels cover, the preset's own version comes back.
The wheel here is six, and the probe prints a list by six's version; the real presets' probes
(torch._C._cuda_getArchFlags(), tf.sysconfig.get_build_info()) were run on PyPI's torch 2.9.1 and tensorflow 2.21.0
wheels by hand (they need 7 GB), see the role's README. The "build index" is the package index itself.

Needs Docker; skips (saying why) when it is missing, or fails when GPUBOX_REQUIRE_INTEGRATION=1. Traffic: pip in the
container, from the wheelhouse in .cache/pip when filled, else the package index; the rest through `docker exec`.
About a minute.
"""

import pytest

from standin import HOST_SETTINGS, MOUNTS
from support.containers import converge, sh, systemd_container

PLAYBOOK = """---
- name: Run the python_envs role
  hosts: all
  become: true
  gather_facts: true  # python_envs's defaults need the architecture, as in configure
  roles:
    - role: python_envs
"""
ENV_DIR = "/opt/envs/checked"
CHECKED = {
    "name": "checked", "kernel": False, "gpu_packages": ["six==1.17.0"], "cpu_packages": ["six==1.17.0"],
    "gpu_archs": ["sm_75", "sm_80"], "gpu_arch_probe": "print('sm_75 sm_80')",
}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    work = tmp_path_factory.mktemp("python-envs")
    with systemd_container("gpubox-python-envs", *MOUNTS) as name:
        sh(name, "mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/update-success-stamp")
        yield {"name": name, "work": work}


def run(host, envs, capability):
    return converge(host["work"], host["name"], PLAYBOOK, HOST_SETTINGS, python_envs=envs, python_envs_gpu=True,
                    python_envs_gpu_compute_capability=capability)


def markers(host):
    return sh(host["name"], f"ls -a {ENV_DIR} 2>/dev/null | grep '^.gpubox-pip-' || true").split()


def test_a_gpu_no_build_runs_on_is_refused_before_anything_is_installed(host):
    refused = {**CHECKED, "name": "refused", "gpu_archs": ["sm_80"]}
    rc, _, output = run(host, [refused], "7.0")
    assert rc != 0
    assert "environment refused: its GPU wheels are built for sm_80" in output
    assert "compute capability 7.0 (sm_70)" in output and "Nothing was installed" in output
    assert sh(host["name"], "test -e /opt/envs/refused && echo there || echo absent") == "absent"


def test_installed_wheels_are_checked_against_the_gpu(host):
    # The preset's list says sm_70 is there, the installed wheels say it is not: the wheels win.
    rc, _, output = run(host, [{**CHECKED, "gpu_archs": ["sm_70", "sm_75", "sm_80"]}], "7.0")
    assert rc != 0, output[-3000:]
    assert "environment checked: the installed GPU wheels are built for sm_75 sm_80" in output
    assert "not for this GPU (sm_70" in output
    assert sh(host["name"], f"{ENV_DIR}/bin/python -c 'import six; print(six.__version__)'") == "1.17.0"
    assert markers(host) == []  # nothing says "installed": the next run checks again

    rc, _, output = run(host, [CHECKED], "8.6")  # Ampere runs sm_80 code
    assert rc == 0, output[-3000:]
    assert len(markers(host)) == 1
    rc, changed, output = run(host, [CHECKED], "8.6")
    assert (rc, changed) == (0, 0), output[-3000:]

    # Another GPU type (one the preset's list claims): the marker names the GPU, so the wheels are checked again.
    rc, _, output = run(host, [{**CHECKED, "gpu_archs": ["sm_75", "sm_80", "sm_90"]}], "9.0")
    assert rc != 0 and "not for this GPU (sm_90" in output, output[-3000:]


def test_a_build_for_the_gpu_is_installed_from_its_own_index_and_replaced_when_the_gpu_changes(host):
    built = {
        "name": "built", "kernel": False, "gpu_packages": ["six==1.17.0"], "gpu_archs": ["sm_80"],
        "gpu_builds": [{"name": "old six", "index_url": "https://pypi.org/simple", "packages": ["six==1.16.0"],
                        "gpu_archs": ["sm_70"]}],
        "gpu_arch_probe": "import six; print('sm_70' if six.__version__ == '1.16.0' else 'sm_80')",
    }
    version = "/opt/envs/built/bin/python -c 'import six; print(six.__version__)'"
    rc, _, output = run(host, [built], "7.0")
    assert rc == 0, output[-3000:]
    assert sh(host["name"], version) == "1.16.0"
    rc, changed, output = run(host, [built], "7.0")
    assert (rc, changed) == (0, 0), output[-3000:]
    rc, _, output = run(host, [built], "8.0")
    assert rc == 0, output[-3000:]
    assert sh(host["name"], version) == "1.17.0"
