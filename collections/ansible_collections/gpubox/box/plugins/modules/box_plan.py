#!/usr/bin/python
"""Documentation of the gpubox.box.box_plan action plugin (plugins/action/box_plan.py)."""

DOCUMENTATION = r"""
module: box_plan
short_description: Read what exists of a gpubox box in one pass, then decide what the command changes
description:
  - "Gather: reads the caller's identity, then, by the command, the box's instances, volumes, security group and
    key pair (by gpubox's exact tags and the exact name gpubox-NAME, never a wildcard), the default VPC and
    subnets, the zones that offer the instance types asked about, the image, the vCPU quota, your public IP and
    your SSH public key (module_utils/box_gather.py). A read that fails is kept for the plan, not raised."
  - "Plan: gpubox's planner (module_utils/box_plan.py), a pure function of the settings, what was found and the
    catalog, decides which resources are the box's (exact gpubox tags, the caller's owner tag), every refusal,
    the changes in order, and the box record."
  - Fails with the plan's problems, so that a refusal comes before anything changes. Its notes and warnings
    (a substituted type, an unreadable quota) are shown as warnings.
  - Changes nothing. An action plugin that runs on the controller, so that the whole pass costs one boto3 import.
options:
  action:
    description:
      - The command; it decides what is read and planned (find is configure's and verify's, autostop is autostop.yml's).
      - C(bake) plans bake.yml's image of the box; C(images) lists your baked images (images.yml) and what prune_keep removes.
    type: str
    required: true
    choices: [autostop, bake, find, images, launch, start, status, stop, teardown]
  name:
    description: The box's name; empty with C(find) (your running boxes) or C(status) (every box).
    type: str
    default: ""
  wanted_type:
    description:
      - The type asked for. A launch reads the zones that offer it and its nearest current alternatives, and the
        quota only when the box does not already run with it.
    type: str
    default: ""
  image_parameters:
    description: Public SSM parameters that name the AMI, read only for a box without an instance.
    type: list
    elements: str
    default: []
  image_ids:
    description: AMI ids to describe as well (an explicit C(ami) setting).
    type: list
    elements: str
    default: []
  ip_lookup_url:
    description: Where to ask for the caller's public IP; empty skips it.
    type: str
    default: ""
  public_key:
    description: The SSH public key on the controller (checked to be one, compared with the key pair; never returned).
    type: path
    default: ""
  private_key:
    description: The private key beside it (only whether it exists is read).
    type: path
    default: ""
  region:
    description: AWS region (set once as module_defaults of the group gpubox.box.aws).
    type: str
    aliases: [aws_region]
  endpoint_url:
    description: AWS endpoint (moto server, LocalStack); empty means AWS itself.
    type: str
    aliases: [aws_endpoint_url]
  settings:
    description: The settings the planner reads (type, os, ami, sizes, ssh_cidr, allow_* ...).
    type: dict
    required: true
  catalog:
    description: The instance catalog, catalog/instance_types.yml (instance families and quota groups).
    type: path
    required: true
  images:
    description: Per operating system, its SSH user, root device and the SSM parameters of its AMIs.
    type: dict
    required: true
author: gpubox developers (@gpubox)
"""

EXAMPLES = r"""
- name: Read box lab, and plan to stop it
  gpubox.box.box_plan:
    action: stop
    name: lab
    settings: {}
    catalog: catalog/instance_types.yml
    images: {}
  register: planned
"""

RETURN = r"""
found:
  description: What exists (see module_utils/box_gather.py).
  returned: always
  type: dict
plan:
  description: The plan (see module_utils/box_plan.py), with the box record in plan.record.
  returned: always
  type: dict
"""
