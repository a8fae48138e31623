"""gpubox.box.nvidia_gpu_facts: answered from the play's one read of the host when it can be.

gpubox.box.host_gather, given gpu_state_file, also reads what this module returns for the environments the last
passed GPU check in that file probed (the NVIDIA facts, that check, their fingerprint). A task that asks for the same
(that state file, those environments or none, nvidia-smi and /proc themselves rather than saved copies), in the play
that took the read and while nothing changed the host since (every change forgets the read: see the drift action),
gets that answer here, without a module run. Anything else runs the module. See plugins/modules/nvidia_gpu_facts.py
for the documentation.
"""

from ansible.plugins.action import ActionBase

from ansible_collections.gpubox.box.plugins.action.drift import play_id
from ansible_collections.gpubox.box.plugins.module_utils.box_nvidia import ARGUMENT_SPEC, PROC_VERSION_PATH


def answer_from(evidence, args, raw_args, play=None):
    """The module's answer from the play's read of the host, or None when the host must be read."""
    gpu = evidence.get("gpu") if isinstance(evidence, dict) and evidence.get("play") == play else None
    if not isinstance(gpu, dict) or "facts" not in gpu:
        return None
    # A path the module would expand (~, $VAR: the host's, as root) may name another one than the read's.
    given = [str(raw_args.get("state_file") or "")] + [str(p) for p in raw_args.get("fingerprint_pythons") or []]
    if any("~" in path or "$" in path for path in given):
        return None
    pythons, state_file = list(args["fingerprint_pythons"]), args["state_file"]
    if (args["nvidia_smi_xml"] or args["proc_version_path"] != PROC_VERSION_PATH
            or (state_file and state_file != gpu.get("state_file")) or (pythons and pythons != gpu.get("pythons"))):
        return None
    return {"ansible_facts": {"nvidia_gpu": gpu["facts"]}, "fingerprint": gpu["fingerprint"] if pythons else "",
            "last_check": gpu["last_check"] if state_file else None, "warnings": list(gpu.get("warnings") or [])}


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        # Checked here too, with the module's own spec: the task may be answered without the module.
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        evidence = (task_vars or {}).get("ansible_facts", {}).get("gpubox_host_evidence")
        answer = answer_from(evidence, args, self._task.args, play_id(self._task))
        if answer is not None:
            result.update(changed=False, read="at the play's start (gpubox.box.host_gather)", **answer)
            return result
        result.update(self._execute_module(task_vars=task_vars))
        gpu = evidence.get("gpu") if isinstance(evidence, dict) else None
        if isinstance(gpu, dict) and gpu.get("unreadable"):
            # Why the play's first read gave up on the GPU (a hung nvidia-smi, say): the module's own error may not say.
            result.setdefault("warnings", []).append(f"The play's first read of the GPU failed: {gpu['unreadable']}")
        return result
