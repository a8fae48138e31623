#!/usr/bin/python
"""Documentation of the gpubox.box.box_plan action plugin (plugins/action/box_plan.py)."""

DOCUMENTATION = r"""
module: box_plan
short_description: Decide what a gpubox command changes, from what gpubox.box.box_gather found
description:
  - Runs gpubox's planner (module_utils/box_plan.py), a pure function of the settings, what was found and the
    catalog. It decides which resources are the box's (exact gpubox tags, the caller's owner tag), every refusal,
    the changes in order, and the box record.
  - Fails with the plan's problems, so that a refusal comes before anything changes. Its notes and warnings
    (a substituted type, an unreadable quota) are shown as warnings.
  - Changes nothing; runs on the controller.
options:
  found:
    description: What gpubox.box.box_gather returned.
    type: dict
    required: true
  settings:
    description: The command (C(action)) and the settings the planner reads.
    type: dict
    required: true
  families:
    description: The catalog's instance families (gpubox_instance_families).
    type: dict
    required: true
  quota_groups:
    description: The catalog's quota groups (gpubox_quota_groups).
    type: dict
    required: true
  images:
    description: Per operating system, its SSH user, root device and the SSM parameters of its AMIs.
    type: dict
    required: true
author: gpubox
"""

EXAMPLES = r"""
- name: Plan what to change
  gpubox.box.box_plan:
    found: "{{ gathered.found }}"
    settings: {action: stop, name: lab}
    families: "{{ gpubox_instance_families }}"
    quota_groups: "{{ gpubox_quota_groups }}"
    images: {}
  register: planned
"""

RETURN = r"""
plan:
  description: The plan (see module_utils/box_plan.py), with the box record in plan.record.
  returned: always
  type: dict
"""
