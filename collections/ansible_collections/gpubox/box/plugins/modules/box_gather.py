#!/usr/bin/python
"""Documentation of the gpubox.box.box_gather action plugin (plugins/action/box_gather.py)."""

DOCUMENTATION = r"""
module: box_gather
short_description: Read what exists of a gpubox box, and what a decision about it needs, in one pass
description:
  - Reads the caller's identity, then, by the command, the box's instances, volumes, security group and key
    pair (by gpubox's exact tags and the exact name gpubox-NAME, never a wildcard), the default VPC and
    subnets, the zones that offer the instance types asked about, the image, the vCPU quota, your public IP
    and your SSH public key.
  - Changes nothing. A read that fails is returned in C(found.errors); gpubox.box.box_plan turns it into a
    refusal.
  - An action plugin that runs on the controller, so that one gather costs one boto3 import.
options:
  action:
    description: The command the gather is for; it decides what is read.
    type: str
    required: true
    choices: [find, find_all, launch, start, status, stop, teardown]
  name:
    description: The box's name; empty with C(find) or C(status) reads every gpubox box in the region.
    type: str
    default: ""
  instance_types:
    description: Instance types whose offering zones a launch needs (the type asked for and its alternatives).
    type: list
    elements: str
    default: []
  wanted_type:
    description: The type asked for; the quota is read only when the box does not already run with it.
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
  quota_groups:
    description: Service Quotas codes mapped to the instance-family pattern that counts against each.
    type: dict
    default: {}
  ip_lookup_url:
    description: Where to ask for the caller's public IP; empty skips it.
    type: str
    default: ""
  public_key:
    description: The SSH public key on the controller.
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
author: gpubox
"""

EXAMPLES = r"""
- name: Read what exists of box lab
  gpubox.box.box_gather:
    action: stop
    name: lab
  register: gathered
"""

RETURN = r"""
found:
  description: What exists (see module_utils/box_gather.py for each key); the input of gpubox.box.box_plan.
  returned: always
  type: dict
"""
