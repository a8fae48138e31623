#!/usr/bin/python
"""Read what the host half needs of a host in one module run: the facts, the evidence of every role's record, the PCI
devices, and the few files the play decides with (the host half's gather step)."""

DOCUMENTATION = r"""
module: host_gather
short_description: Read a host once for the configure play (facts, every role's evidence, PCI devices)
description:
  - "The gather step of the host half: one module run in place of ansible.builtin.setup and one read per role. It
    logs in, collects the facts C(ansible.builtin.setup) collects for O(gather_subset), and reads:"
  - "the evidence of every record in O(record_dir) (what gpubox.box.drift wrote at the end of each role's last complete
    run), compared with how it reads now, as fact C(gpubox_host_evidence.records): name to C(settings) (the recorded
    digest), C(keys) (a digest of the evidence's keys), C(drifted) and C(drift). gpubox.box.drift's check decides
    on the controller from it, without reading the host again, while nothing changed the host since;"
  - "the PCI devices under O(pci_root) (vendor, device and class, a line each), as C(gpubox_host_evidence.pci);"
  - "how each of O(stat_paths) reads (C(gpubox_host_stat)) and the content of each JSON file of
    O(json_files) (C(gpubox_host_json), null when absent or not JSON)."
  - Changes nothing.
options:
  gather_subset:
    description: What C(ansible.builtin.setup) would collect (its option of that name).
    type: list
    elements: str
    default: [min]
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
author: gpubox developers (@gpubox)
"""

EXAMPLES = r"""
- name: Log in, gather the facts and read every role's evidence
  gpubox.box.host_gather:
    stat_paths: [/var/lib/gpubox]
    json_files: [/etc/gpubox/autostop.json]
"""

RETURN = r"""
ansible_facts:
  description: The facts of O(gather_subset), and C(gpubox_host_evidence), C(gpubox_host_stat) and C(gpubox_host_json).
  type: dict
  returned: always
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.facts import ansible_collector, default_collectors
from ansible.module_utils.facts.namespace import PrefixFactNamespace

from ansible_collections.gpubox.box.plugins.module_utils.box_drift import (
    NAME, RECORD_DIR, SHOWN, EvidenceError, evidence_drift, gather, keys_digest, params_for, path_evidence, read_json,
    read_record, unsafe_folder)

# As ansible.builtin.setup has it.
MINIMAL_GATHER_SUBSET = frozenset(["apparmor", "caps", "cmdline", "date_time", "distribution", "dns", "env", "fips",
                                   "local", "lsb", "pkg_mgr", "platform", "python", "selinux", "service_mgr",
                                   "ssh_pub_keys", "user"])


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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather_subset=dict(type="list", elements="str", default=["min"]),
            record_dir=dict(type="path", default=RECORD_DIR),
            pci_root=dict(type="path", default="/sys/bus/pci/devices"),
            stat_paths=dict(type="list", elements="path", default=[]),
            json_files=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    namespace = PrefixFactNamespace(namespace_name="ansible", prefix="ansible_")
    collector = ansible_collector.get_ansible_collector(
        all_collector_classes=default_collectors.collectors, namespace=namespace, filter_spec=[],
        gather_subset=params["gather_subset"], gather_timeout=10, minimal_gather_subset=MINIMAL_GATHER_SUBSET)
    facts = collector.collect(module=module)
    evidence = records_evidence(module, params["record_dir"])
    evidence.update(pci_root=params["pci_root"], pci=pci_devices(params["pci_root"]))
    facts.update(
        gpubox_host_evidence=evidence,
        gpubox_host_stat={path: path_evidence(path) for path in params["stat_paths"]},
        gpubox_host_json={path: read_json(path) for path in params["json_files"]},
    )
    module.exit_json(changed=False, ansible_facts=facts)


if __name__ == "__main__":
    main()
