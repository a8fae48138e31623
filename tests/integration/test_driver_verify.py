"""The nvidia_driver role's verify step (a Deep Learning AMI's own driver) run for real on a systemd container.

The container has no GPU, so the step is entered as the role enters it on a p5.48xlarge image that brought its
driver: the plan made by the role's own filter and tables, then tasks/verify.yml. It must run through (its reads
and its warnings) and warn about what a box without a loaded module or Fabric Manager lacks; the decisions behind
the warnings (a newer driver accepted, one that cannot serve the GPU or the CUDA refused) are unit-tested in
tests/unit/test_driver_plan.py.

Needs Docker; skips (saying why) when it is missing, or fails when GPUBOX_REQUIRE_INTEGRATION=1. Traffic: only
`docker exec`. About 20 seconds.
"""

from standin import REPO
from support.containers import converge, systemd_container

PLAYBOOK = f"""---
- name: Run the driver role's verify step as on a p5.48xlarge Deep Learning AMI
  hosts: all
  become: true
  gather_facts: true
  vars_files:
    - {REPO}/catalog/instance_types.yml
  tasks:
    - name: Load the driver role's tables
      ansible.builtin.include_vars:
        file: {REPO}/roles/nvidia_driver/vars/main.yml

    - name: Plan as the role does for an image that brought its driver
      ansible.builtin.set_fact:
        gpubox_nvidia_plan: >-
          {{{{ ('p5.48xlarge' | gpubox.box.instance_type(gpubox_instance_families, gpubox_quota_groups))
              | gpubox.box.driver_plan('Ubuntu', '24.04', __nvidia_driver_platforms, __nvidia_driver_architectures,
                kernel=ansible_facts.kernel, cuda_min_branch=__nvidia_driver_cuda_min_branch)
              | combine({{'preinstalled': true, 'action': 'verify'}}) }}}}

    - name: Run the verify step
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: verify.yml
      vars:
        nvidia_driver_cuda_versions: ["12"]
"""


def test_verify_step_runs_and_warns(tmp_path):
    with systemd_container("gpubox-driver-verify") as name:
        rc, changed, output = converge(tmp_path, name, PLAYBOOK)
    assert (rc, changed) == (0, 0), output[-3000:]
    # One warning line each (the loop's items; the callback folds the messages).
    assert "(item=no NVIDIA kernel module is loaded (/proc/driver/nvidia/version is missing))" in output
    assert "(item=nvidia-fabricmanager is not active; NVSwitch GPUs stay unusable without it)" in output
    assert output.count("WARNING: ") == 2
