"""gpubox.box.plugin_cache: the collection's Jinja plugins loaded once in the controller, for every task's worker."""

DOCUMENTATION = r"""
name: plugin_cache
type: aggregate
short_description: Loads the gpubox.box collection's filters and lookups once, for the host half
description:
  - Ansible runs each task of each host in a worker process forked from the controller's, and loads Jinja's
    filters (Ansible's own and a collection's) and lookups in that worker on first use, so every task of the host
    half loads them again. Loaded here once, before the first task that runs one of the collection's host actions
    (drift, host_gather, nvidia_gpu_facts), they are inherited by every later worker.
  - A playbook of the AWS half alone (status, stop, start) runs none of those actions and loads nothing here.
  - Speed only; without this callback the playbooks do the same, slower (about 0.4 s on a no-op configure). A
    callbacks_enabled list of your own (ANSIBLE_CALLBACKS_ENABLED) replaces ansible.cfg's, and leaves it out.
requirements:
  - enabled in callbacks_enabled (gpubox's ansible.cfg enables it)
author: gpubox developers (@gpubox)
"""

import os

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, lookup_loader, module_loader

COLLECTION = "gpubox.box"
PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Looking up one filter of a collection loads all of Ansible's own filters and every filter file of the collection
# (Ansible finds a collection's filter by asking each of its files).
A_FILTER = "settings_digest"
# The host half's actions: the first task that runs one starts the host half. (Ansible loads a task's action plugin
# in the controller itself.)
HOST_ACTION_NAMES = ("drift", "host_gather", "nvidia_gpu_facts")
HOST_ACTIONS = frozenset(f"{COLLECTION}.{name}" for name in HOST_ACTION_NAMES)


def lookup_names():
    """The lookups of this collection, by their file names."""
    folder = os.path.join(PLUGINS, "lookup")
    return sorted(name[:-3] for name in os.listdir(folder) if name.endswith(".py") and not name.startswith("_"))


def runs_a_host_action(task):
    """Whether a task runs one of the host actions: by its action as written, or, for a short name, as it resolves
    under the task's collections (asked only then: resolving costs; and not through task.resolved_action, which warns
    when asked before the task runs)."""
    if task.action in HOST_ACTIONS:
        return True
    if task.action not in HOST_ACTION_NAMES:
        return False
    found = module_loader.find_plugin_with_context(task.action, collection_list=task.collections)
    return found.resolved and found.resolved_fqcn in HOST_ACTIONS


def load_plugins():
    """Load the collection's filters (with Ansible's own) and lookups into this process."""
    filter_loader.get(f"{COLLECTION}.{A_FILTER}")
    for name in lookup_names():
        lookup_loader.get(f"{COLLECTION}.{name}", class_only=True)


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
        if not self.loaded and runs_a_host_action(task):
            self.loaded = True
            load_plugins()
