"""Unit tests for gpubox.box.drift (the evidence a role may be skipped on), the source_digest lookup and
python_envs_drift_evidence. The module runs for real, as Ansible runs it, on files in a temporary directory.

Run from the repository root: python -m pytest tests/unit/test_drift.py -q
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.gpubox.box.plugins.filter.python_envs import python_envs_drift_evidence
from ansible_collections.gpubox.box.plugins.lookup.source_digest import tree_digest
from ansible_collections.gpubox.box.plugins.module_utils import box_drift

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "collections/ansible_collections/gpubox/box/plugins/modules/drift.py"


def run_module(tmp_path, **args):
    """Run the module as Ansible does (its arguments in a file); returns its JSON answer."""
    args.setdefault("record_dir", str(tmp_path / "records"))
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env)
    answer = json.loads(done.stdout)
    assert done.returncode == (1 if answer.get("failed") else 0), done.stderr
    return answer


@pytest.fixture
def owned(tmp_path):
    """What a role left: a config file, a directory and an environment's installed packages."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.conf").write_text("port = 8888\n")
    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for name in ("numpy-2.1.0.dist-info", "keras-3.15.1.dist-info"):
        (site / name).mkdir()
    return {
        "name": "app",
        "settings": "digest-1",
        "paths": [str(tmp_path / "etc" / "app.conf"), str(tmp_path / "etc"), str(tmp_path / "gone")],
        "globs": [str(tmp_path / "env" / "lib" / "python*" / "site-packages" / "*.dist-info")],
    }


def test_no_record_is_no_evidence(tmp_path, owned):
    checked = run_module(tmp_path, **owned)
    assert checked["converged"] is False and checked["drift"] == ["no record of a complete run"]
    assert checked["changed"] is False and not (tmp_path / "records").exists()


def test_a_recorded_run_is_believed_while_everything_reads_the_same(tmp_path, owned):
    recorded = run_module(tmp_path, state="record", **owned)
    assert recorded["changed"] is True
    record = tmp_path / "records" / "app.json"
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert run_module(tmp_path, state="record", **owned)["changed"] is False  # the same evidence: nothing written
    checked = run_module(tmp_path, **owned)
    assert checked["converged"] is True and checked["drift"] == [] and checked["drifted"] == []


CHANGES = [
    (lambda t: (t / "etc" / "app.conf").write_text("port = 9999\n"), "app.conf: content changed"),
    (lambda t: (t / "etc" / "app.conf").chmod(0o600), "app.conf: mode or owner changed"),
    (lambda t: (t / "etc" / "app.conf").unlink(), "app.conf: was file 0644"),
    (lambda t: (t / "gone").mkdir(), "gone: was absent, now directory"),
    (lambda t: (t / "etc").chmod(0o700), "etc: was directory 0755"),
    (lambda t: (t / "env/lib/python3.11/site-packages/numpy-2.1.0.dist-info").rmdir(), "gone: numpy-2.1.0.dist-info"),
    (lambda t: (t / "env/lib/python3.11/site-packages/torch-2.9.1.dist-info").mkdir(), "new: torch-2.9.1.dist-info"),
]


def record_then_change(tmp_path, owned, change):
    """A complete run's record of what the role left (in known modes), then one change to it."""
    os.umask(0o022)
    (tmp_path / "etc" / "app.conf").chmod(0o644)
    (tmp_path / "etc").chmod(0o755)
    run_module(tmp_path, state="record", **owned)
    change(tmp_path)


@pytest.mark.parametrize("change, expected", CHANGES)
def test_each_kind_of_drift_is_found_and_named(tmp_path, owned, change, expected):
    record_then_change(tmp_path, owned, change)
    checked = run_module(tmp_path, **owned)
    assert checked["converged"] is False
    assert len(checked["drift"]) == 1 and expected in checked["drift"][0], checked["drift"]


def test_other_settings_or_code_are_drift_too_and_the_evidence_is_still_named(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    (tmp_path / "env/lib/python3.11/site-packages/keras-3.15.1.dist-info").rmdir()
    checked = run_module(tmp_path, **{**owned, "settings": "digest-2"})
    assert checked["converged"] is False
    assert checked["drifted"][0] == "settings" and checked["drifted"][1].startswith("glob:")


def test_absent_forgets_the_record(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    assert run_module(tmp_path, name="app", state="absent")["changed"] is True
    assert run_module(tmp_path, name="app", state="absent")["changed"] is False
    assert run_module(tmp_path, **owned)["converged"] is False


def test_a_torn_or_foreign_record_is_no_evidence(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    record = tmp_path / "records" / "app.json"
    record.write_text(record.read_text()[:40])
    assert run_module(tmp_path, **owned)["converged"] is False
    record.write_text("[]\n")
    assert run_module(tmp_path, **owned)["converged"] is False


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", ".hidden", "x" * 200])
def test_a_record_name_cannot_leave_the_record_folder(tmp_path, name):
    refused = run_module(tmp_path, name=name, state="record")
    assert refused.get("failed") and "must be letters, digits" in refused["msg"]
    assert not (tmp_path / "records").exists()


def test_check_mode_writes_nothing(tmp_path, owned):
    answer = run_module(tmp_path, state="record", _ansible_check_mode=True, **owned)
    assert answer["changed"] is True and not (tmp_path / "records").exists()


def test_a_symbolic_link_is_followed_and_its_target_named(tmp_path):
    target = tmp_path / "python3.11"
    target.write_text("#!")
    link = tmp_path / "python"
    link.symlink_to(target)
    assert box_drift.path_evidence(str(link)).endswith(f" -> {target}")
    target.unlink()
    assert box_drift.path_evidence(str(link)) == "absent"  # a venv whose interpreter was removed


def test_mountinfo_reads_the_source_and_type_of_each_mount_point():
    text = (
        "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n"
        "98 22 259:3 / /data rw,relatime shared:45 - ext4 /dev/nvme1n1 rw,nofail\n"
        "99 22 0:50 / /my\\040data rw - tmpfs tmpfs rw\n"
    )
    assert box_drift.mountinfo(text) == {"/": "/dev/nvme0n1p1 ext4", "/data": "/dev/nvme1n1 ext4", "/my data": "tmpfs tmpfs"}


def test_systemctl_show_is_read_unit_by_unit():
    text = (
        "ActiveState=active\nUnitFileState=enabled\nFragmentPath=/etc/systemd/system/jupyter.service\nDropInPaths=\n\n"
        "ActiveState=inactive\nUnitFileState=disabled\nFragmentPath=/etc/systemd/system/gpubox-autostop.timer\n"
        "DropInPaths=/etc/systemd/system/gpubox-autostop.timer.d/x.conf\n"
    )
    shown = box_drift.systemctl_show(text, ["jupyter.service", "gpubox-autostop.timer"])
    assert shown["jupyter.service"].startswith("ActiveState=active UnitFileState=enabled")
    assert shown["gpubox-autostop.timer"].endswith("DropInPaths=/etc/systemd/system/gpubox-autostop.timer.d/x.conf")


def test_the_source_digest_follows_every_file_but_compiled_python_and_docs(tmp_path):
    role = tmp_path / "role"
    (role / "tasks").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "tasks" / "main.yml").write_text("---\n")
    first = tree_digest([str(role)])
    (role / "README.md").write_text("words\n")
    (role / "meta" / "argument_specs.yml").write_text("argument_specs: {}\n")
    (role / "tasks" / "__pycache__").mkdir()
    (role / "tasks" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert tree_digest([str(role)]) == first
    (role / "tasks" / "main.yml").write_text("---\n# changed\n")
    assert tree_digest([str(role)]) != first
    (role / "tasks" / "main.yml").write_text("---\n")
    (role / "meta" / "main.yml").write_text("dependencies: []\n")
    assert tree_digest([str(role)]) != first
    (role / "meta" / "main.yml").unlink()
    (role / "tasks" / "main.yml").write_text("---\n")
    (role / "tasks" / "main.yml").rename(role / "tasks" / "other.yml")
    assert tree_digest([str(role)]) != first  # a renamed file is a change


def test_python_envs_evidence_covers_each_environment_and_its_kernel():
    specs = [{"name": "tensorflow", "dir": "/opt/envs/tensorflow", "kernel": True},
             {"name": "jupyter", "dir": "/opt/envs/jupyter", "kernel": False}]
    evidence = python_envs_drift_evidence(specs, "venv", "/usr/local/share/jupyter/kernels", "/opt/envs", "/opt/conda")
    assert "/opt/envs" in evidence["paths"]
    assert "/usr/local/share/jupyter/kernels/tensorflow/kernel.json" in evidence["paths"]
    assert not any("kernels/jupyter" in path for path in evidence["paths"])
    assert "/opt/envs/jupyter/bin/python" in evidence["paths"]
    assert "/opt/envs/tensorflow/lib/python*/site-packages/*.dist-info" in evidence["globs"]
    assert "/opt/envs/tensorflow/.gpubox-*" in evidence["globs"]
    conda = python_envs_drift_evidence(specs, "conda", "/k", "/opt/envs", "/opt/conda")
    assert {"/opt/conda/bin/conda", "/opt/conda/gpubox/tensorflow.yml"} <= set(conda["paths"])
    assert "/opt/envs" not in conda["paths"]


def test_the_settings_digest_reads_values_as_the_role_does():
    from ansible_collections.gpubox.box.plugins.filter.drift import settings_digest
    base = settings_digest({"autostop_minutes": 60, "autostop_max_hours": 0, "jupyter_allow_remote": False}, "code")
    # -e gives 60, a file read back gives 0.0, an inventory gives "false": the same settings.
    assert settings_digest({"autostop_minutes": "60", "autostop_max_hours": 0.0, "jupyter_allow_remote": "false"},
                           "code") == base
    assert settings_digest({"autostop_minutes": 90, "autostop_max_hours": 0, "jupyter_allow_remote": False},
                           "code") != base
    assert settings_digest({"autostop_minutes": 60, "autostop_max_hours": 0, "jupyter_allow_remote": False},
                           "other code") != base
    assert settings_digest({"python_envs": ["tensorflow"]}) != settings_digest({"python_envs": ["pytorch"]})


def test_records_in_a_folder_another_user_can_change_are_not_believed(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    (tmp_path / "records").chmod(0o777)  # anyone could plant a record here
    checked = run_module(tmp_path, **owned)
    assert checked["converged"] is False and "is not root's alone" in checked["drift"][0]
    refused = run_module(tmp_path, state="record", **owned)
    assert refused["changed"] is False and refused["warnings"]
    assert run_module(tmp_path, name="app", state="absent")["changed"] is False  # nothing deleted through it
    (tmp_path / "records").chmod(0o700)
    assert run_module(tmp_path, **owned)["converged"] is True
    # A link to a folder another user can change is no better; a link to a safe one is fine.
    (tmp_path / "records").rename(tmp_path / "real")
    (tmp_path / "records").symlink_to(tmp_path / "real")
    assert run_module(tmp_path, **owned)["converged"] is True
    (tmp_path / "real").chmod(0o757)
    assert "is not root's alone" in run_module(tmp_path, **owned)["drift"][0]
