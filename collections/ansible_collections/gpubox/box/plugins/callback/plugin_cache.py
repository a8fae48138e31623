"""gpubox.box.plugin_cache: the collection's plugins loaded once in the controller, for every task's worker."""

DOCUMENTATION = r"""
name: plugin_cache
type: aggregate
short_description: Loads the gpubox.box collection's filters, lookups and host actions once, for the host half
description:
  - Ansible runs each task of each host in a worker process forked from the controller's, and loads Jinja's
    filters (Ansible's own and a collection's), lookups and action plugins in that worker on first use, so every
    task of the host half loads them again. Loaded here once, before the first task that runs one of the
    collection's host actions (drift, host_gather, nvidia_gpu_facts), they are inherited by every later worker.
  - A playbook of the AWS half alone (status, stop, start) runs none of those actions, a task or two of its own
    each, and loads nothing here.
  - Speed only; without this callback the playbooks do the same, slower (about 0.4 s on a no-op configure).
requirements:
  - enabled in callbacks_enabled (gpubox's ansible.cfg enables it)
author: gpubox developers (@gpubox)
"""

import os

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import action_loader, filter_loader, lookup_loader

COLLECTION = "gpubox.box"
PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Looking up one filter of a collection loads all of Ansible's own filters and every filter file of the collection
# (Ansible finds a collection's filter by asking each of its files).
A_FILTER = "settings_digest"
# The actions of the host half: drift runs once per role, host_gather and nvidia_gpu_facts share its code.
ACTIONS = ("drift", "host_gather", "nvidia_gpu_facts")
HOST_ACTIONS = frozenset(f"{COLLECTION}.{name}" for name in ACTIONS)


def lookup_names():
    """The lookups of this collection, by their file names."""
    folder = os.path.join(PLUGINS, "lookup")
    return sorted(name[:-3] for name in os.listdir(folder) if name.endswith(".py") and not name.startswith("_"))


def load_plugins():
    """Load the collection's filters (with Ansible's own), lookups and host actions into this process."""
    filter_loader.get(f"{COLLECTION}.{A_FILTER}")
    for name in lookup_names():
        lookup_loader.get(f"{COLLECTION}.{name}", class_only=True)
    for name in ACTIONS:
        action_loader.get(f"{COLLECTION}.{name}", class_only=True)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gpubox.box.plugin_cache"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loaded = False

    # Sent in the controller before the task's workers are forked.
    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self.loaded and task.action in HOST_ACTIONS:
            self.loaded = True
            load_plugins()
