"""Unit tests for gpubox.box.plugin_cache, the callback that loads the collection's plugins in the controller once,
before the host half's first task, so that the worker Ansible forks for each task inherits them.

Run from the repository root: python -m pytest tests/unit/test_plugin_cache.py -q
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "collections/ansible_collections/gpubox/box/plugins"

# In a fresh interpreter: the modules Ansible's loaders hold after the callback saw tasks of these actions start.
LOADED = """
import json, sys
from ansible.plugins.loader import callback_loader, init_plugin_loader
init_plugin_loader([sys.argv[1]])


class Task:
    # A task as the callback sees it when it starts; resolved_action warns then, so the callback must not ask it.
    def __init__(self, action, collections):
        self.action, self.collections = action, collections

    @property
    def resolved_action(self):
        raise AssertionError("resolved_action asked before the task ran")


before = set(sys.modules)
callback = callback_loader.get("gpubox.box.plugin_cache")
for action in sys.argv[2:]:
    # "name@collection": a short name under a play's collections.
    name, _, collection = action.partition("@")
    callback.v2_playbook_on_task_start(Task(name, [collection] if collection else []), is_conditional=False)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_modules(*actions):
    done = subprocess.run([sys.executable, "-c", LOADED, str(ROOT / "collections"), *actions],
                          capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def test_the_first_task_of_the_host_half_loads_the_collections_filters_and_lookups():
    wanted = {f"ansible_collections.gpubox.box.plugins.{path.parent.name}.{path.stem}"
              for kind in ("filter", "lookup") for path in (PLUGINS / kind).glob("*.py")}
    assert len(wanted) >= 7
    loaded = loaded_modules("ansible.builtin.set_fact", "gpubox.box.host_gather")
    assert wanted <= loaded
    # Not the AWS half's action (Ansible loads a task's action in the controller when the task comes).
    assert "ansible_collections.gpubox.box.plugins.action.box_plan" not in loaded


def test_a_short_name_under_a_plays_collections_counts_as_its_resolved_name():
    assert "ansible_collections.gpubox.box.plugins.lookup.source_digest" in loaded_modules("drift@gpubox.box")
    # Another collection's drift (here: none) is not gpubox's.
    assert "ansible_collections.gpubox.box.plugins.lookup.source_digest" not in loaded_modules("drift@acme.ops")
    assert "ansible_collections.gpubox.box.plugins.lookup.source_digest" not in loaded_modules("drift")


def test_a_playbook_of_the_aws_half_alone_loads_nothing():
    loaded = loaded_modules("ansible.builtin.set_fact", "gpubox.box.box_plan", "amazon.aws.ec2_instance_info",
                            "{{ __ec2_box_action }}")
    assert not {name for name in loaded if name.startswith("ansible_collections.gpubox.box.plugins.filter")}
    assert not {name for name in loaded if name.startswith("ansible_collections.gpubox.box.plugins.lookup")}


def test_the_projects_ansible_cfg_enables_it():
    # The project's ansible.cfg alone: an ANSIBLE_* variable of the caller's would override it.
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-config"), "dump", "--only-changed",
                           "--format", "json"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    # Global settings have a name; the plugins' own sections come as other entries.
    settings = {entry["name"]: entry["value"] for entry in json.loads(done.stdout) if "name" in entry}
    assert "gpubox.box.plugin_cache" in settings.get("CALLBACKS_ENABLED", []), "ansible.cfg was not read, or lacks it"
