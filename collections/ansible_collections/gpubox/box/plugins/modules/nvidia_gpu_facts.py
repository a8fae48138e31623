#!/usr/bin/python
"""Facts about the NVIDIA driver and GPUs of a host, read from nvidia-smi and /proc."""

DOCUMENTATION = r"""
module: nvidia_gpu_facts
short_description: Report the NVIDIA driver, CUDA version and GPUs of a host as facts
description:
  - Runs C(nvidia-smi -q -x) and reads C(/proc/driver/nvidia/version), and sets the fact
    C(ansible_facts.nvidia_gpu).
  - "Reports the kernel module's version and flavor (open or proprietary), the user-space
    (NVML) library version, and whether the two differ. That mismatch is the state a driver
    package upgrade leaves behind while the old module is still loaded (nvidia-smi then prints
    C(Failed to initialize NVML: Driver/library version mismatch)); a reboot is the usual fix."
  - A host without an NVIDIA driver is not an error; the fact then has C(present=false) and a
    C(reason).
  - Needs only the Python standard library on the host. Never changes anything.
  - "In the configure play, whose first task (gpubox.box.host_gather with C(gpu_state_file)) read the same at the
    play's start, the task is answered on the controller from that read, without a module run, while nothing changed
    the host since (C(read) then says so): the same facts, fingerprint and last check, as of the play's start."
options:
  nvidia_smi_xml:
    description:
      - Read this file, saved output of C(nvidia-smi -q -x), instead of running nvidia-smi.
      - For offline use and tests. A path that does not exist is an error.
    type: path
  proc_version_path:
    description:
      - The kernel module's version file. When it does not exist, no NVIDIA kernel module is
        loaded.
    type: path
    default: /proc/driver/nvidia/version
  fingerprint_pythons:
    description:
      - "Also fingerprint, in the same run, what a probe of these interpreters' environments depends on besides
        its settings and the GPUs: the boot (one real probe per boot at least), the variables that pick Keras's
        backend and the GPUs, and each environment's interpreter, installed packages (pip's and conda's) and gpubox
        install markers. Returned as C(fingerprint); not C(~/.keras/keras.json), which Keras writes at its first
        import."
    type: list
    elements: path
    default: []
  state_file:
    description:
      - The last passed check (gpu_check's), returned as C(last_check) when it is root's own (0600), a plain file
        and JSON; null otherwise.
    type: path
author: gpubox developers (@gpubox)
notes:
  - Output of nvidia-smi that is not well-formed XML fails the task, naming the parser's error.
  - Compute capability is not in the XML of current drivers (DTD v13); it is derived from the
    product name and architecture with a table in this module, and
    C(compute_capability_source) says so.
  - nvidia-smi can hang on a GPU in a bad state; put a C(timeout) on the task where that matters.
  - Supports check mode; the module only reads.
"""

EXAMPLES = r"""
- name: Read the NVIDIA driver and GPU facts
  gpubox.box.nvidia_gpu_facts:

- name: Stop when the loaded kernel module does not match the installed driver
  ansible.builtin.assert:
    that: not ansible_facts.nvidia_gpu.mismatch
    fail_msg: "{{ ansible_facts.nvidia_gpu.mismatch_message }}"
  when: ansible_facts.nvidia_gpu.present

- name: Show each GPU's name, memory and compute capability
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.memory_total_mib }} MiB, sm_{{ item.compute_capability }}"
  loop: "{{ ansible_facts.nvidia_gpu.gpus }}"
  loop_control:
    label: "{{ item.pci_bus_id }}"

- name: Parse saved nvidia-smi output on the controller
  gpubox.box.nvidia_gpu_facts:
    nvidia_smi_xml: files/nvidia-smi-q.xml
    proc_version_path: files/proc-driver-nvidia-version.txt
  delegate_to: localhost
"""

RETURN = r"""
read:
  description: Where the answer comes from, when the play's one read of the host answered the task (no module run).
  type: str
  returned: when answered from gpubox.box.host_gather's read
fingerprint:
  description: A sha256 of what the probe depends on (O(fingerprint_pythons)); empty when none is given.
  type: str
  returned: always
last_check:
  description: The content of O(state_file) when it may be believed, else null.
  type: dict
  returned: always
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    nvidia_gpu:
      description: The NVIDIA driver and its GPUs.
      returned: always
      type: complex
      contains:
        present:
          description: An NVIDIA driver is there (nvidia-smi gave XML, the kernel module is loaded, or both).
          type: bool
          sample: true
        reason:
          description:
            - Why C(present) is false, or why the GPU details are missing (nvidia-smi not found or failing).
            - Empty when everything could be read.
          type: str
          sample: ""
        nvidia_smi_path:
          description: Path of nvidia-smi, or null when it is not installed or I(nvidia_smi_xml) was given.
          type: str
          sample: /usr/bin/nvidia-smi
        driver_version:
          description: Driver version as nvidia-smi reports it; the kernel module's version when nvidia-smi cannot run.
          type: str
          sample: 580.159.04
        cuda_version:
          description: Highest CUDA version the driver supports, as nvidia-smi reports it.
          type: str
          sample: "13.0"
        kernel_module_version:
          description: Version of the loaded kernel module, from I(proc_version_path); null when no module is loaded.
          type: str
          sample: 580.159.04
        kernel_module_flavor:
          description: C(open) for the NVIDIA open kernel module, C(proprietary) otherwise; null when none is loaded.
          type: str
          sample: open
        library_version:
          description:
            - Version of the user-space driver library (NVML). From nvidia-smi when it runs; in the mismatch state
              from its C(NVML library version) line (major.minor only) or the libnvidia-ml file name.
          type: str
          sample: 580.159.04
        mismatch:
          description: The kernel module's version differs from the library's, or nvidia-smi says so.
          type: bool
          sample: false
        mismatch_message:
          description: What differs and that a reboot is the usual fix; empty when there is no mismatch.
          type: str
          sample: ""
        gpu_count:
          description: Number of GPUs nvidia-smi reported.
          type: int
          sample: 1
        gpus:
          description: One entry per GPU, in nvidia-smi's order (its GPU index). Values it reports as N/A are null.
          type: list
          elements: dict
          contains:
            index: {description: Position in nvidia-smi's list (the GPU index CUDA_VISIBLE_DEVICES uses)., type: int}
            minor_number: {description: N of /dev/nvidiaN., type: int}
            name: {description: Product name., type: str, sample: NVIDIA H100 80GB HBM3}
            architecture: {description: Product architecture., type: str, sample: Hopper}
            uuid: {description: GPU UUID., type: str}
            pci_bus_id: {description: PCI bus id., type: str, sample: "00000000:00:06.0"}
            memory_total_mib: {description: Frame buffer memory in MiB., type: int, sample: 81559}
            memory_used_mib: {description: Frame buffer memory in use in MiB., type: int, sample: 0}
            compute_capability: {description: "CUDA compute capability, null when unknown.", type: str, sample: "9.0"}
            compute_capability_source:
              description: C(nvidia-smi) when the XML has it, C(table) when derived from name or architecture, or null.
              type: str
              sample: table
            persistence_mode: {description: Persistence mode is enabled., type: bool, sample: true}
            ecc_mode:
              description: ECC mode now (C(current)) and after the next reset (C(pending)); null where not supported.
              type: dict
              sample: {current: true, pending: true}
            mig_mode:
              description: MIG mode now (C(current)) and after the next reset (C(pending)); null where not supported.
              type: dict
              sample: {current: false, pending: false}
            mig_device_count: {description: MIG devices configured on the GPU., type: int, sample: 0}
            clocks:
              description: Current clocks in MHz.
              type: dict
              sample: {graphics_mhz: 375, sm_mhz: 375, memory_mhz: 2619}
            power_limit_w: {description: "Power limit in force, in watts.", type: float, sample: 700.0}
            power_draw_w: {description: Average power draw in watts., type: float, sample: 111.65}
            utilization:
              description: GPU and memory utilisation in percent.
              type: dict
              sample: {gpu_percent: 0, memory_percent: 0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.box.plugins.module_utils.box_nvidia import (
    ARGUMENT_SPEC, SmiXmlError, fingerprint, last_check, read_gpu)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        facts, warnings = read_gpu(module, module.params["nvidia_smi_xml"], module.params["proc_version_path"])
    except SmiXmlError as e:
        module.fail_json(msg=str(e))
    for warning in warnings:
        module.warn(warning)
    pythons, state_file = module.params["fingerprint_pythons"], module.params["state_file"]
    module.exit_json(changed=False, ansible_facts={"nvidia_gpu": facts},
                     fingerprint=fingerprint(pythons) if pythons else "",
                     last_check=last_check(state_file) if state_file else None)


if __name__ == "__main__":
    main()
