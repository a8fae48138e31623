#!/usr/bin/python
"""Read what the host half needs of a host in one module run: the facts, the evidence of every role's record, the PCI
devices, and the few files the play decides with (the host half's gather step)."""

DOCUMENTATION = r"""
module: host_gather
short_description: Read a host once for the configure play (facts, every role's evidence, PCI devices)
description:
  - "The gather step of the host half: one module run in place of ansible.builtin.setup and one read per role. It
    logs in, collects the facts the host half uses, with C(ansible.builtin.setup)'s own distribution, platform,
    pkg_mgr, service_mgr, python, user and env collectors (C(distribution*), C(os_family), C(architecture),
    C(kernel), C(pkg_mgr) for ansible.builtin.package, and so on; not the rest of setup's C(min) subset), and reads:"
  - "the evidence of every record in O(record_dir) (what gpubox.box.drift wrote at the end of each role's last complete
    run), compared with how it reads now, as fact C(gpubox_host_evidence.records): name to C(settings) (the recorded
    digest), C(keys) (a digest of the evidence's keys), C(drifted) and C(drift). gpubox.box.drift's check decides
    on the controller from it, without reading the host again, while nothing changed the host since;"
  - "the PCI devices under O(pci_root) (vendor, device and class, a line each), as C(gpubox_host_evidence.pci);"
  - "how each of O(stat_paths) reads (C(gpubox_host_stat)) and the content of each JSON file of
    O(json_files) (C(gpubox_host_json), null when absent or not JSON);"
  - "with O(gpu_state_file), what gpubox.box.nvidia_gpu_facts returns for the environments the last passed GPU check
    (in that file) probed: the NVIDIA driver and GPUs, that check, and the fingerprint of those environments, as
    C(gpubox_host_evidence.gpu). gpubox.box.nvidia_gpu_facts answers from it on the controller while nothing changed
    the host since;"
  - "the content of each of O(secret_files), returned as C(secrets), never as a fact (a fact cache would keep it on
    disk), and the task's result is then hidden as with C(no_log)."
  - Changes nothing.
options:
  record_dir:
    description: Where gpubox.box.drift keeps its records (root's only; the records are not believed otherwise).
    type: path
    default: /var/lib/gpubox/drift
  pci_root:
    description: The PCI devices' folder.
    type: path
    default: /sys/bus/pci/devices
  stat_paths:
    description:
      - Paths read as gpubox.box.drift reads them (C(directory 0755 root:root), C(file 0644 root:root sha256:...),
        C(absent)).
    type: list
    elements: path
    default: []
  json_files:
    description: Small JSON files to read (settings files); null for a file that is absent or not JSON.
    type: list
    elements: path
    default: []
  gpu_state_file:
    description:
      - The GPU check's record of its last passed check (gpu_check's); also read the NVIDIA driver and GPUs, and
        fingerprint the environments that check probed. Not given, no GPU read.
    type: path
  secret_files:
    description: Small files to read as secrets (the JupyterLab token); null for a file that is absent or not a plain file.
    type: list
    elements: path
    default: []
author: gpubox developers (@gpubox)
"""

EXAMPLES = r"""
- name: Log in, gather the facts and read every role's evidence
  gpubox.box.host_gather:
    stat_paths: [/var/lib/gpubox]
    json_files: [/etc/gpubox/autostop.json]
    gpu_state_file: /var/lib/gpubox/gpu-check.json
    secret_files: [/etc/gpubox/jupyter-token]
"""

RETURN = r"""
ansible_facts:
  description: The facts above, and C(gpubox_host_evidence), C(gpubox_host_stat), C(gpubox_host_json).
  type: dict
  returned: always
secrets:
  description: The content of each of O(secret_files) (null when absent); the result is hidden as with C(no_log).
  type: dict
  returned: when O(secret_files) is given
"""

import glob
import os
import stat
import subprocess
import threading

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.facts import ansible_collector
from ansible.module_utils.facts.namespace import PrefixFactNamespace
from ansible.module_utils.facts.system.distribution import DistributionFactCollector
from ansible.module_utils.facts.system.env import EnvFactCollector
from ansible.module_utils.facts.system.pkg_mgr import PkgMgrFactCollector
from ansible.module_utils.facts.system.platform import PlatformFactCollector
from ansible.module_utils.facts.system.python import PythonFactCollector
from ansible.module_utils.facts.system.service_mgr import ServiceMgrFactCollector
from ansible.module_utils.facts.system.user import UserFactCollector

from ansible_collections.gpubox.box.plugins.module_utils.box_drift import (
    NAME, RECORD_DIR, SHOWN, EvidenceError, evidence_drift, gather, keys_digest, params_for, path_evidence, read_json,
    read_record, unsafe_folder)
from ansible_collections.gpubox.box.plugins.module_utils.box_nvidia import SmiXmlError, fingerprint, last_check, read_gpu

# The facts the host half uses, by setup's own collectors imported one by one: setup's default_collectors imports
# every collector (hardware, network, virtualization...), which Ansible then packs into the module and the host imports.
COLLECTORS = [DistributionFactCollector, EnvFactCollector, PkgMgrFactCollector, PlatformFactCollector,
              PythonFactCollector, ServiceMgrFactCollector, UserFactCollector]


def records_evidence(module, record_dir):
    """Each record, compared with how its evidence reads now. A record whose evidence cannot be read is marked so:
    gpubox.box.drift's module then reads it, and fails, for that role alone."""
    unsafe = unsafe_folder(record_dir)
    found = {"record_dir": record_dir, "trusted": not unsafe, "why": unsafe, "records": {}}
    if unsafe:
        return found
    for path in sorted(glob.glob(os.path.join(glob.escape(record_dir), "*.json"))):
        name = os.path.basename(path)[:-len(".json")]
        record = read_record(path) if NAME.match(name) else None
        if record is None or not isinstance(record.get("evidence"), dict):
            continue
        recorded = record["evidence"]
        try:
            now = gather(module, params_for(recorded))
        except (EvidenceError, OSError) as err:
            found["records"][name] = {"unreadable": str(err)}
            continue
        drifted, lines = evidence_drift(recorded, now)
        found["records"][name] = {"settings": record.get("settings"), "keys": keys_digest(recorded),
                                  "drifted": drifted, "drift": lines[:SHOWN]}
    return found


def pci_devices(pci_root):
    """'vendor device class' of each PCI device, as the nvidia_driver role lists them."""
    lines = []
    for device in sorted(glob.glob(os.path.join(glob.escape(pci_root), "*"))):
        try:
            fields = []
            for name in ("vendor", "device", "class"):
                with open(os.path.join(device, name), encoding="ascii") as handle:
                    fields.append(handle.read().strip())
        except (OSError, ValueError):
            continue
        lines.append(" ".join(fields))
    return lines


# nvidia-smi can hang on a GPU in a bad state: the read gives up on it (gpubox.box.nvidia_gpu_facts then reads the GPU
# itself, under its task's timeout) rather than hold up every role, or fail the login step.
SMI_SECONDS = 60


def bounded(argv):
    """run_command's (rc, out, err), given up on after SMI_SECONDS: nvidia-smi is killed then, and one stuck in the
    kernel, which no kill stops, is left behind in its thread rather than waited for."""
    done = {}

    def run():
        try:
            done["result"] = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=SMI_SECONDS,
                                            check=False)
        except (OSError, subprocess.SubprocessError) as err:
            done["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(SMI_SECONDS + 5)
    if "error" in done:
        raise done["error"]
    if "result" not in done:
        raise subprocess.TimeoutExpired(argv, SMI_SECONDS)
    found = done["result"]
    return found.returncode, found.stdout.decode(errors="replace"), found.stderr.decode(errors="replace")


def gpu_read(module, state_file):
    """What gpubox.box.nvidia_gpu_facts would return with this state file and the environments the last passed check
    in it probed (its fingerprint_pythons), or why the GPU could not be read (that module then reads it, and fails)."""
    try:
        facts, warnings = read_gpu(module, run=bounded)
    except (SmiXmlError, OSError, subprocess.SubprocessError) as err:
        return {"unreadable": f"{type(err).__name__}: {err}"}
    last = last_check(state_file)
    probes = (last or {}).get("probes")
    targets = [probe.get("item") for probe in probes if isinstance(probe, dict)] if isinstance(probes, list) else []
    pythons = [target["python"] for target in targets if isinstance(target, dict) and isinstance(target.get("python"), str)]
    return {"state_file": state_file, "facts": facts, "warnings": warnings, "last_check": last, "pythons": pythons,
            "fingerprint": fingerprint(pythons) if pythons else ""}


def read_secret(path, limit=65536):
    """A small file's text (as ansible.builtin.slurp would read it), or None when absent or not a plain file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            record_dir=dict(type="path", default=RECORD_DIR),
            pci_root=dict(type="path", default="/sys/bus/pci/devices"),
            stat_paths=dict(type="list", elements="path", default=[]),
            json_files=dict(type="list", elements="path", default=[]),
            gpu_state_file=dict(type="path"),
            # The files' names are not secret; their content is (returned apart, the result hidden).
            secret_files=dict(type="list", elements="path", default=[], no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    namespace = PrefixFactNamespace(namespace_name="ansible", prefix="ansible_")
    collector = ansible_collector.get_ansible_collector(
        all_collector_classes=COLLECTORS, namespace=namespace, filter_spec=[],
        gather_subset=sorted({collector.name for collector in COLLECTORS}), gather_timeout=10)
    facts = collector.collect(module=module)
    evidence = records_evidence(module, params["record_dir"])
    evidence.update(pci_root=params["pci_root"], pci=pci_devices(params["pci_root"]))
    if params["gpu_state_file"]:
        evidence["gpu"] = gpu_read(module, params["gpu_state_file"])
    facts.update(
        gpubox_host_evidence=evidence,
        gpubox_host_stat={path: path_evidence(path) for path in params["stat_paths"]},
        gpubox_host_json={path: read_json(path) for path in params["json_files"]},
    )
    secrets = {"secrets": {path: read_secret(path) for path in params["secret_files"]}} if params["secret_files"] else {}
    module.exit_json(changed=False, ansible_facts=facts, **secrets)


if __name__ == "__main__":
    main()
