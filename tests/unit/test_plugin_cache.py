"""Unit tests for gpubox.box.plugin_cache, the callback that loads the collection's plugins in the controller once,
before the host half's first task, so that the worker Ansible forks for each task inherits them.

Run from the repository root: python -m pytest tests/unit/test_plugin_cache.py -q
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "collections/ansible_collections/gpubox/box/plugins"

# In a fresh interpreter: the modules Ansible's loaders hold after the callback saw tasks of these actions start.
LOADED = """
import json, sys, types
from ansible.plugins.loader import callback_loader, init_plugin_loader
init_plugin_loader([sys.argv[1]])
before = set(sys.modules)
callback = callback_loader.get("gpubox.box.plugin_cache")
for action in sys.argv[2:]:
    callback.v2_playbook_on_task_start(types.SimpleNamespace(action=action), is_conditional=False)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_modules(*actions):
    done = subprocess.run([sys.executable, "-c", LOADED, str(ROOT / "collections"), *actions],
                          capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def test_the_first_task_of_the_host_half_loads_the_collections_filters_lookups_and_host_actions():
    wanted = {f"ansible_collections.gpubox.box.plugins.{path.parent.name}.{path.stem}"
              for kind in ("filter", "lookup") for path in (PLUGINS / kind).glob("*.py")}
    wanted |= {f"ansible_collections.gpubox.box.plugins.action.{name}" for name in ("drift", "host_gather", "nvidia_gpu_facts")}
    assert len(wanted) >= 10
    loaded = loaded_modules("ansible.builtin.set_fact", "gpubox.box.host_gather")
    assert wanted <= loaded
    # The AWS actions run once where they are used: loading them for every playbook would cost more than it saves.
    assert "ansible_collections.gpubox.box.plugins.action.box_plan" not in loaded
    assert "ansible.module_utils.urls" not in loaded


def test_a_playbook_of_the_aws_half_alone_loads_nothing():
    loaded = loaded_modules("ansible.builtin.set_fact", "gpubox.box.box_plan", "amazon.aws.ec2_instance_info")
    assert not {name for name in loaded if name.startswith("ansible_collections.gpubox.box.plugins.filter")}
    assert not {name for name in loaded if name.startswith("ansible_collections.gpubox.box.plugins.lookup")}


def test_the_projects_ansible_cfg_enables_it():
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-config"), "dump", "--only-changed",
                           "--format", "json"], cwd=ROOT, capture_output=True, text=True, check=True)
    # Global settings have a name; the plugins' own sections come as other entries.
    settings = {entry["name"]: entry["value"] for entry in json.loads(done.stdout) if "name" in entry}
    assert "gpubox.box.plugin_cache" in settings["CALLBACKS_ENABLED"]
