#!/usr/bin/python
"""Tell from evidence whether what a role set up is still as the role left it (the no-op re-run's shortcut)."""

DOCUMENTATION = r"""
module: drift
short_description: Compare what a role set up with what it left at its last complete run
description:
  - "Reads the evidence of what a role owns on the host, in one pass: each file's content, mode and owner, each
    directory's mode and owner, the names a pattern matches (an environment's installed packages), each systemd
    unit's state, each OS package's version and each mount point's source."
  - "With C(state=check), compares it with the record the role wrote at the end of its last complete run, for the
    same settings (a digest the caller computes of everything the role was given and of its own code). The role may
    skip its work only when C(converged) is true: the record exists, the settings are the same and nothing differs.
    Changes nothing."
  - "With C(state=record) (the role's last task), writes the record: the settings and the evidence as they are now.
    With C(state=absent), deletes it (the role runs in full next time)."
  - "A check is answered on the controller, without a module run, from the play's one read of the host
    (gpubox.box.host_gather) while nothing changed the host since; any answer that lets a role do its work, and any
    record written or deleted, forgets that read."
  - "A record is evidence, not a stamp: it is believed only while every file, unit, package and mount it lists still
    reads the same."
options:
  name:
    description:
      - The record's name (letters, digits, '.', '_' and '-'); one per role and set of inputs.
      - Required but with O(state=changing).
    type: str
    default: ""
  state:
    description:
      - Check against the record, write it, or delete it.
      - "C(changing) says that the host is about to change outside a role's own check (a driver install): the
        play's one read of the host (gpubox.box.host_gather) no longer stands, and later checks read the host."
    type: str
    choices: [check, record, absent, changing]
    default: check
  settings:
    description:
      - A digest of everything the role was given and of its code, computed on the controller (never the settings
        themselves, which may hold secrets, since a module's arguments can be logged).
    type: str
    default: ""
  paths:
    description: Files (content, mode, owner) and directories (mode, owner); a missing path is evidence too.
    type: list
    elements: path
    default: []
  globs:
    description: Patterns whose matching paths are listed (a package removed from an environment changes the list).
    type: list
    elements: str
    default: []
  services:
    description: systemd units; their active and enabled states, unit file and drop-ins.
    type: list
    elements: str
    default: []
  packages:
    description: OS packages; the version installed (dpkg or rpm), or that none is.
    type: list
    elements: str
    default: []
  mounts:
    description: Mount points; what is mounted there and its filesystem type, or that nothing is.
    type: list
    elements: path
    default: []
  record_dir:
    description: Where the records are kept (root's only).
    type: path
    default: /var/lib/gpubox/drift
author: gpubox developers (@gpubox)
"""

EXAMPLES = r"""
- name: Look for changes since JupyterLab was last set up
  gpubox.box.drift:
    name: jupyter
    settings: "{{ __jupyter_settings | to_json | hash('sha256') }}"
    paths: [/etc/systemd/system/jupyter.service]
    services: [jupyter.service]
  register: __jupyter_drift

- name: Set up JupyterLab
  ansible.builtin.include_tasks: setup.yml
  when: not __jupyter_drift.converged
"""

RETURN = r"""
converged:
  description: The record exists, for the same settings, and all the evidence reads as recorded (C(state=check)).
  type: bool
  returned: always
drift:
  description: What differs from the record, a line each (at most 20); empty when converged.
  type: list
  elements: str
  returned: always
drifted:
  description: The keys of the evidence that differ (path:..., glob:..., service:..., package:..., mount:...).
  type: list
  elements: str
  returned: always
"""

import copy
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.box.plugins.module_utils.box_drift import (
    ARGUMENT_SPEC, NAME, SHOWN, EvidenceError, compare, gather, read_record, unsafe_folder, write_record)


def main():
    module = AnsibleModule(
        argument_spec=copy.deepcopy(ARGUMENT_SPEC),
        supports_check_mode=True,
    )
    params = module.params
    if params["state"] == "changing":  # the action forgets the play's read of the host; nothing to do here
        module.exit_json(changed=False, converged=False, drift=[], drifted=[])
    if not NAME.match(params["name"]):
        module.fail_json(msg=f"drift: the record name {params['name']!r} must be letters, digits, '.', '_' and '-'.")
    path = os.path.join(params["record_dir"], params["name"] + ".json")
    unsafe = unsafe_folder(params["record_dir"])
    record = None if unsafe else read_record(path)

    if params["state"] == "absent":
        changed = not unsafe and os.path.exists(path)
        if changed and not module.check_mode:
            os.unlink(path)
        module.exit_json(changed=changed, converged=False, drift=[], drifted=[])

    try:
        evidence = gather(module, params)
    except EvidenceError as err:
        module.fail_json(msg=str(err))
    if params["state"] == "record":
        if unsafe:
            module.warn(f"gpubox.box.drift: no record written, so the next run does the work again: {unsafe}.")
            module.exit_json(changed=False, converged=False, drift=[unsafe], drifted=["record"])
        new = {"settings": params["settings"], "evidence": evidence}
        changed = record != new
        if changed and not module.check_mode:
            write_record(path, new)
        module.exit_json(changed=changed, converged=True, drift=[], drifted=[])

    drifted, lines = compare(record, params["settings"], evidence)
    if unsafe:
        lines = [f"records not trusted: {unsafe}", *lines[1:]]
    module.exit_json(changed=False, converged=not drifted, drift=lines[:SHOWN], drifted=drifted)


if __name__ == "__main__":
    main()
