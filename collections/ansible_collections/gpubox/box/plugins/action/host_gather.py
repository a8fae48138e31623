"""gpubox.box.host_gather: the module's one read of the host, stamped with the play that took it.

gpubox.box.drift's action answers checks from the read only within that play: facts outlive it (a later play of the
same run, a fact cache), and the host may have changed since. A result with secrets (secret_files) is hidden as with
no_log. See plugins/modules/host_gather.py for the
documentation.
"""

from ansible.plugins.action import ActionBase

from ansible_collections.gpubox.box.plugins.action.drift import play_id


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        result.update(self._execute_module(task_vars=task_vars))
        evidence = result.get("ansible_facts", {}).get("gpubox_host_evidence")
        if isinstance(evidence, dict):
            evidence["play"] = play_id(self._task)
        if result.get("secrets"):
            result["_ansible_no_log"] = True
        return result
