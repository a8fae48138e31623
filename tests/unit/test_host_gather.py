"""Unit tests for the host half's gather step: gpubox.box.host_gather reads every role's record and evidence at once,
and gpubox.box.drift's action answers a check from that read exactly as the module would from the host, or leaves
the check to the module. The modules run for real, as Ansible runs them, on files in a temporary directory.

Run from the repository root: python -m pytest tests/unit/test_host_gather.py -q
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.gpubox.box.plugins.action.drift import answer_from, expands
from ansible_collections.gpubox.box.plugins.action.nvidia_gpu_facts import answer_from as gpu_answer_from
from ansible_collections.gpubox.box.plugins.module_utils import box_nvidia
from ansible_collections.gpubox.box.plugins.module_utils.box_drift import ARGUMENT_SPEC
from ansible_collections.gpubox.box.plugins.modules import host_gather
from ansible_collections.gpubox.box.plugins.modules.host_gather import records_evidence

from test_drift import CHANGES, owned, record_then_change, run_module  # noqa: F401 (owned: a fixture, used by name)

ROOT = Path(__file__).resolve().parents[2]
GATHER = ROOT / "collections/ansible_collections/gpubox/box/plugins/modules/host_gather.py"
GPU_FACTS = ROOT / "collections/ansible_collections/gpubox/box/plugins/modules/nvidia_gpu_facts.py"
ANSWER = ("converged", "drift", "drifted")


def run(tmp_path, path, **args):
    """Run a module as Ansible does (its arguments in a file); returns its JSON answer."""
    args_file = tmp_path / f"{path.stem}-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(path), str(args_file)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["changed"] is False
    return answer


def gather_answer(tmp_path, **args):
    """Run host_gather as Ansible does; returns its whole answer."""
    args.setdefault("record_dir", str(tmp_path / "records"))
    args.setdefault("pci_root", str(tmp_path / "pci"))
    return run(tmp_path, GATHER, **args)


def gather(tmp_path, **args):
    """Run host_gather as Ansible does; returns its facts."""
    return gather_answer(tmp_path, **args)["ansible_facts"]


def checked(tmp_path, **args):
    """The arguments of a check as the action has them once validated (every option, defaults filled in)."""
    full = {name: spec.get("default") for name, spec in ARGUMENT_SPEC.items()}
    return {**full, "record_dir": str(tmp_path / "records"), **args}


def test_the_read_answers_as_the_module_while_nothing_changed(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    evidence = gather(tmp_path)["gpubox_host_evidence"]
    assert list(evidence["records"]) == ["app"]
    answer = answer_from(evidence, checked(tmp_path, **owned))
    assert answer == {"converged": True, "drift": [], "drifted": []}
    module = run_module(tmp_path, **owned)
    assert answer == {key: module[key] for key in ANSWER}


@pytest.mark.parametrize("change, expected", CHANGES)
def test_each_kind_of_drift_read_once_is_answered_as_the_module_does(tmp_path, owned, change, expected):
    record_then_change(tmp_path, owned, change)
    answer = answer_from(gather(tmp_path)["gpubox_host_evidence"], checked(tmp_path, **owned))
    module = run_module(tmp_path, **owned)
    assert answer["converged"] is False and expected in answer["drift"][0]
    assert answer == {key: module[key] for key in ANSWER}


def test_other_settings_are_answered_from_the_read_too(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    (tmp_path / "env/lib/python3.11/site-packages/keras-3.15.1.dist-info").rmdir()
    evidence = gather(tmp_path)["gpubox_host_evidence"]
    answer = answer_from(evidence, checked(tmp_path, **{**owned, "settings": "digest-2"}))
    module = run_module(tmp_path, **{**owned, "settings": "digest-2"})
    assert answer["drifted"][0] == "settings" and answer == {key: module[key] for key in ANSWER}


def test_no_record_is_answered_and_what_the_read_cannot_tell_is_left_to_the_module(tmp_path, owned):
    evidence = gather(tmp_path)["gpubox_host_evidence"]
    assert answer_from(evidence, checked(tmp_path, **owned)) == {
        key: run_module(tmp_path, **owned)[key] for key in ANSWER}
    run_module(tmp_path, state="record", **owned)
    evidence = gather(tmp_path)["gpubox_host_evidence"]
    # Evidence asked for that the record does not hold: only reading the host tells what it is now.
    more = {**owned, "paths": [*owned["paths"], str(tmp_path / "new.conf")]}
    assert answer_from(evidence, checked(tmp_path, **more)) is None
    # Another record folder, or none read at all (a play without the gather step, or after a change).
    assert answer_from(evidence, checked(tmp_path, **{**owned, "record_dir": str(tmp_path / "other")})) is None
    assert answer_from({}, checked(tmp_path, **owned)) is None
    assert answer_from(None, checked(tmp_path, **owned)) is None


def test_a_read_is_believed_only_in_the_play_that_took_it(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    evidence = {**gather(tmp_path)["gpubox_host_evidence"], "play": "play-1"}
    assert answer_from(evidence, checked(tmp_path, **owned), "play-1")["converged"] is True
    # A later play of the same run, or a fact cache's copy in another run.
    assert answer_from(evidence, checked(tmp_path, **owned), "play-2") is None


def test_paths_the_host_would_expand_are_left_to_the_module():
    assert expands({"paths": ["~ubuntu/notebooks"]}) and expands({"mounts": ["$DATA"]})
    assert expands({"record_dir": "~/records"}) and not expands({"paths": ["/etc/app.conf"], "globs": ["/a/*"]})


class FailingSystemctl:
    """A host whose systemctl fails (one record's services cannot be read)."""

    def get_bin_path(self, name, required=False):
        return "/bin/" + name

    def run_command(self, argv):
        return 1, "", "Failed to connect to bus"


class NoSystemctl(FailingSystemctl):
    """A host without systemctl at all."""

    def get_bin_path(self, name, required=False):
        return None


@pytest.mark.parametrize("host, why", [(FailingSystemctl(), "systemctl show failed"),
                                       (NoSystemctl(), "systemctl is not installed")])
def test_a_record_whose_evidence_cannot_be_read_is_left_to_the_module_alone(tmp_path, owned, host, why):
    run_module(tmp_path, state="record", **owned)
    (tmp_path / "records" / "svc.json").write_text(json.dumps(
        {"settings": "", "evidence": {"service:jupyter.service": "ActiveState=active"}}))
    found = records_evidence(host, str(tmp_path / "records"))
    assert why in found["records"]["svc"]["unreadable"]
    assert answer_from(found, checked(tmp_path, name="svc", services=["jupyter.service"])) is None
    # The other records are read and answered as before.
    assert answer_from(found, checked(tmp_path, **owned))["converged"] is True


def test_records_in_a_folder_another_user_can_change_are_left_to_the_module(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    (tmp_path / "records").chmod(0o777)
    evidence = gather(tmp_path)["gpubox_host_evidence"]
    assert evidence["trusted"] is False and evidence["records"] == {} and "not root's alone" in evidence["why"]
    assert answer_from(evidence, checked(tmp_path, **owned)) is None


def test_a_torn_record_reads_as_none(tmp_path, owned):
    run_module(tmp_path, state="record", **owned)
    record = tmp_path / "records" / "app.json"
    record.write_text(record.read_text()[:40])
    assert answer_from(gather(tmp_path)["gpubox_host_evidence"], checked(tmp_path, **owned))["drifted"] == ["record"]


def test_the_facts_pci_devices_owners_and_settings_files_are_read_in_the_same_run(tmp_path):
    for name, fields in {"0000:00:1e.0": ("0x10de", "0x2330", "0x030200"), "0000:00:1f.0": ("0x1d0f", "0xec20", "0x020000")}.items():
        device = tmp_path / "pci" / name
        device.mkdir(parents=True)
        for field, value in zip(("vendor", "device", "class"), fields):
            (device / field).write_text(value + "\n")
    (tmp_path / "pci" / "not-a-device").mkdir()
    (tmp_path / "state").mkdir(mode=0o2775)
    (tmp_path / "state").chmod(0o2775)
    (tmp_path / "autostop.json").write_text('{"minutes": 30}\n')
    (tmp_path / "broken.json").write_text("{")
    facts = gather(tmp_path, stat_paths=[str(tmp_path / "state"), str(tmp_path / "none")],
                   json_files=[str(tmp_path / "autostop.json"), str(tmp_path / "broken.json"), str(tmp_path / "none")])
    assert facts["gpubox_host_evidence"]["pci"] == ["0x10de 0x2330 0x030200", "0x1d0f 0xec20 0x020000"]
    assert facts["gpubox_host_stat"] == {str(tmp_path / "state"): "directory 2775 root:root",
                                         str(tmp_path / "none"): "absent"}
    assert facts["gpubox_host_json"] == {str(tmp_path / "autostop.json"): {"minutes": 30},
                                         str(tmp_path / "broken.json"): None, str(tmp_path / "none"): None}
    # The facts the roles decide with (setup's own collectors), and pkg_mgr, which ansible.builtin.package needs.
    assert facts["ansible_distribution"] and facts["ansible_kernel"] and facts["ansible_os_family"]
    assert facts["ansible_distribution_major_version"] and facts["ansible_architecture"] and facts["ansible_pkg_mgr"]


def last_checked(tmp_path, *pythons):
    """An environment per python, and gpu_check's record of its last passed check, which probed them (root's 0600
    plain file in a folder only root may change, as gpu_check writes it)."""
    for python in pythons:
        Path(python).parent.mkdir(parents=True)
        Path(python).write_text("")
        (Path(python).parents[1] / "lib/python3.11/site-packages/keras-3.15.1.dist-info").mkdir(parents=True)
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    record = state / "gpu-check.json"
    record.write_text(json.dumps({"inputs": "digest", "probes": [
        {"item": {"name": Path(p).parents[1].name, "python": p}, "rc": 0, "stdout_lines": ["{}"]} for p in pythons]}))
    record.chmod(0o600)
    return str(record)


def gpu_args(**args):
    """nvidia_gpu_facts's arguments as its action has them once validated (defaults filled in)."""
    return {**{name: spec.get("default") for name, spec in box_nvidia.ARGUMENT_SPEC.items()}, **args}


def test_the_gpu_read_answers_as_the_module_for_the_environments_last_probed(tmp_path):
    pythons = [str(tmp_path / "envs" / name / "bin" / "python") for name in ("tensorflow", "torch")]
    state_file = last_checked(tmp_path, *pythons)
    evidence = {**gather(tmp_path, gpu_state_file=state_file)["gpubox_host_evidence"], "play": "play-1"}
    assert evidence["gpu"]["pythons"] == pythons
    args = {"fingerprint_pythons": pythons, "state_file": state_file}
    answer = gpu_answer_from(evidence, gpu_args(**args), args, "play-1")
    module = run(tmp_path, GPU_FACTS, **args)
    assert answer["fingerprint"] and answer["last_check"]["inputs"] == "digest"
    assert {key: answer[key] for key in ("ansible_facts", "fingerprint", "last_check")} == {
        key: module[key] for key in ("ansible_facts", "fingerprint", "last_check")}
    # Facts alone (a check that reuses nothing, verify.yml's): no fingerprint, no last check, as the module.
    assert gpu_answer_from(evidence, gpu_args(), {}, "play-1")["fingerprint"] == run(tmp_path, GPU_FACTS)["fingerprint"] == ""
    # An environment installed since the read is in the module's fingerprint, not the read's: forgotten by then.
    (Path(pythons[0]).parents[1] / "lib/python3.11/site-packages/numpy-2.1.0.dist-info").mkdir()
    assert run(tmp_path, GPU_FACTS, **args)["fingerprint"] != answer["fingerprint"]


@pytest.mark.parametrize("args", [
    {"fingerprint_pythons": ["/opt/envs/other/bin/python"]},              # other environments than the last check's
    {"state_file": "/var/lib/other/gpu-check.json"},                       # another record
    {"nvidia_smi_xml": "/tmp/nvidia-smi.xml"},                             # a saved nvidia-smi (tests)
    {"proc_version_path": "/tmp/version"},                                 # a stand-in for /proc (tests)
    {"fingerprint_pythons": ["~/envs/tensorflow/bin/python"]},             # a path the host would expand
])
def test_a_gpu_read_that_does_not_answer_the_task_is_left_to_the_module(tmp_path, args):
    pythons = [str(tmp_path / "envs" / "tensorflow" / "bin" / "python")]
    state_file = last_checked(tmp_path, *pythons)
    evidence = {**gather(tmp_path, gpu_state_file=state_file)["gpubox_host_evidence"], "play": "play-1"}
    same = {"fingerprint_pythons": pythons, "state_file": state_file}
    assert gpu_answer_from(evidence, gpu_args(**same), same, "play-1") is not None
    asked = {**same, **args}
    assert gpu_answer_from(evidence, gpu_args(**asked), asked, "play-1") is None
    # Another play's read, a forgotten one, none at all, or one whose nvidia-smi could not be read.
    assert gpu_answer_from(evidence, gpu_args(**same), same, "play-2") is None
    assert gpu_answer_from({}, gpu_args(**same), same, "play-1") is None
    assert gpu_answer_from(None, gpu_args(**same), same, None) is None
    unreadable = {**evidence, "gpu": {"unreadable": "Could not read the output of nvidia-smi -q -x"}}
    assert gpu_answer_from(unreadable, gpu_args(**same), same, "play-1") is None


def test_a_last_check_not_root_s_alone_gives_no_environments_to_fingerprint(tmp_path):
    state_file = last_checked(tmp_path, str(tmp_path / "envs" / "tensorflow" / "bin" / "python"))
    Path(state_file).chmod(0o644)
    gpu = gather(tmp_path, gpu_state_file=state_file)["gpubox_host_evidence"]["gpu"]
    assert gpu["last_check"] is None and gpu["pythons"] == [] and gpu["fingerprint"] == ""


class SmiHost:
    """A host whose nvidia-smi is the given script."""

    def __init__(self, path):
        self.path = str(path)

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return self.path

    def run_command(self, argv):
        raise AssertionError("the read runs nvidia-smi itself, bounded")


@pytest.mark.parametrize("script, why", [
    ("#!/bin/sh\nexec sleep 30\n", "TimeoutExpired"),                   # a GPU in a bad state: nvidia-smi hangs
    ("", "OSError"),                                               # not a program at all
    ("#!/bin/sh\necho '<nvidia_smi_log><gpu'\n", "Could not read the output of nvidia-smi"),
])
def test_a_broken_or_hung_nvidia_smi_leaves_the_gpu_to_the_module_and_fails_nothing(tmp_path, monkeypatch, script, why):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(script)
    smi.chmod(0o755)
    monkeypatch.setattr(host_gather, "SMI_SECONDS", 1)
    gpu = host_gather.gpu_read(SmiHost(smi), str(tmp_path / "gpu-check.json"))
    assert why in gpu["unreadable"], gpu
    evidence = {"play": "play-1", "gpu": gpu}
    assert gpu_answer_from(evidence, gpu_args(state_file=str(tmp_path / "gpu-check.json")), {}, "play-1") is None


def test_a_mismatch_read_once_is_the_module_s_answer_with_its_warning(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\n"
                   "echo 'NVML library version: 580.178'\nexit 18\n")
    smi.chmod(0o755)
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n")
    facts, warnings = box_nvidia.read_gpu(SmiHost(smi), proc_version_path=str(proc), run=host_gather.bounded)
    assert facts["mismatch"] and warnings == [facts["mismatch_message"]]


def test_secret_files_are_returned_outside_the_facts(tmp_path):
    token = tmp_path / "jupyter-token"
    token.write_text("JUPYTER_TOKEN=s3cr3t-t0ken\n")
    token.chmod(0o600)
    (tmp_path / "a-folder").mkdir()
    answer = gather_answer(tmp_path, secret_files=[str(token), str(tmp_path / "absent"), str(tmp_path / "a-folder")])
    assert answer["secrets"] == {str(token): "JUPYTER_TOKEN=s3cr3t-t0ken\n", str(tmp_path / "absent"): None,
                                 str(tmp_path / "a-folder"): None}
    # Never a fact: a fact cache would write it to disk.
    assert "s3cr3t" not in json.dumps(answer["ansible_facts"])
    assert "secrets" not in gather_answer(tmp_path)


PLAY = """
- name: Read once, answer from the read, and forget it once something lets a role change the host
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    app: {name: app, settings: digest-1, paths: ["{tmp}/etc/app.conf", "{tmp}/etc"], record_dir: "{tmp}/records"}
    other: {name: other, paths: ["{tmp}/other.conf"], record_dir: "{tmp}/records"}
  tasks:
    - {name: Record app, gpubox.box.drift: "{{ app | combine({'state': 'record'}) }}"}
    - {name: Record other, gpubox.box.drift: "{{ other | combine({'state': 'record'}) }}"}
    - {name: Change what other left, ansible.builtin.copy: {content: "changed", dest: "{tmp}/other.conf", mode: "0644"}}
    - name: Read the host once
      gpubox.box.host_gather: {record_dir: "{tmp}/records", pci_root: "{tmp}/pci", gpu_state_file: "{tmp}/gpu-check.json",
                               secret_files: ["{tmp}/token"]}
      register: read
    - {name: Check app, gpubox.box.drift: "{{ app }}", register: app_first}
    - {name: Read the GPU, gpubox.box.nvidia_gpu_facts: {state_file: "{tmp}/gpu-check.json"}, register: gpu_first}
    - {name: Check other, gpubox.box.drift: "{{ other }}", register: other_checked}
    - {name: Check app again, gpubox.box.drift: "{{ app }}", register: app_again}
    - {name: Read the GPU again, gpubox.box.nvidia_gpu_facts: {state_file: "{tmp}/gpu-check.json"}, register: gpu_again}
    - name: Show the answers
      ansible.builtin.debug:
        msg: "{{ {'app_first': app_first, 'other': other_checked, 'app_again': app_again, 'gpu_first': gpu_first,
                   'gpu_again': gpu_again, 'secrets': read.secrets, 'left': ansible_facts.gpubox_host_evidence} | to_json }}"
"""


def test_the_action_answers_from_the_read_until_a_check_lets_a_role_change_the_host(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.conf").write_text("port = 8888\n")
    (tmp_path / "other.conf").write_text("as left\n")
    (tmp_path / "token").write_text("JUPYTER_TOKEN=s3cr3t-t0ken\n")
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.replace("{tmp}", str(tmp_path)))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "json"}
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    tasks = json.loads(done.stdout)["plays"][0]["tasks"]
    shown = json.loads(tasks[-1]["hosts"]["localhost"]["msg"])
    # Converged, from the read: no module run.
    assert shown["app_first"]["converged"] is True and "read" in shown["app_first"]
    # Drifted, from the read, which it forgets: the role whose check this is will change the host.
    assert shown["other"]["converged"] is False and "read" in shown["other"]
    assert "other.conf: content changed" in shown["other"]["drift"][0]
    assert shown["left"] == {}
    # The next check reads the host again (the module ran): still converged.
    assert shown["app_again"]["converged"] is True and "read" not in shown["app_again"]
    # The GPU facts too: from the read while it stands, from the module once it is forgotten; the same facts.
    assert "read" in shown["gpu_first"] and "read" not in shown["gpu_again"]
    assert shown["gpu_first"]["ansible_facts"] == shown["gpu_again"]["ansible_facts"]
    # The read's secrets reach the play (registered), never its output: the read's result is hidden as with no_log.
    assert shown["secrets"] == {str(tmp_path / "token"): "JUPYTER_TOKEN=s3cr3t-t0ken\n"}
    read = tasks[3]["hosts"]["localhost"]
    assert tasks[3]["task"]["name"] == "Read the host once" and read.get("censored") and "secrets" not in read
    assert "s3cr3t" not in json.dumps(tasks[:-1])
