"""gpubox.box.drift: a check decided on the controller from the play's one read of the host, when it can be.

gpubox.box.host_gather (the configure play's first task on a host) reads every role's record and evidence at once,
into the fact gpubox_host_evidence. A check (state=check) whose record and evidence keys are in it, and whose
evidence raises no question there, is answered here from it, exactly as the module would answer: no module run.
Anything else runs the module on the host as before: a record not in the read (or read from a folder not trusted, or
unreadable), evidence asked for that differs from the record's, a path to expand (~, $VAR: the host's, as root), a
play without the read.

The read stands only while nothing changed the host since: every answer that lets a role do its work (a check that
is not converged, a record written or deleted, state=changing) forgets it, so that every later check reads the host
again. The read is believed only in the play that took it (gpubox.box.host_gather's action stamps it): facts outlive
a play. See plugins/modules/drift.py for the module's documentation.
"""

from ansible.plugins.action import ActionBase

from ansible_collections.gpubox.box.plugins.module_utils.box_drift import (
    ARGUMENT_SPEC, KINDS, NAME, SHOWN, compare, keys_digest, settings_drift)

FORGET = {"gpubox_host_evidence": {}}


def play_id(task):
    """The play a task runs in, as a run-unique id (a read is believed only in the play that took it)."""
    play = task.get_play()
    # A play has no public id.
    return play._uuid if play is not None else None  # pylint: disable=protected-access


def expands(args):
    """Whether a path given would be expanded (~, $VAR): on the host, as root, it may mean another path than here."""
    given = [args.get("record_dir") or ""] + list(args.get("paths") or []) + list(args.get("mounts") or [])
    return any("~" in str(path) or "$" in str(path) for path in given)


def asked_keys(args):
    """The evidence keys the module would read for these (validated) arguments."""
    return [f"{kind}:{value}" for kind, option in KINDS.items() for value in args[option]]


def answer_from(evidence, args, play=None):
    """The module's answer to a check, from the play's read of the host, or None when the host must be read."""
    name = args.get("name")
    if (not isinstance(evidence, dict) or not evidence.get("trusted") or evidence.get("play") != play
            or evidence.get("record_dir") != args["record_dir"] or not NAME.match(name)):
        return None
    record = evidence.get("records", {}).get(name)
    if record is None:
        drifted, lines = compare(None, args["settings"], {})
    elif "unreadable" in record or keys_digest(asked_keys(args)) != record.get("keys"):
        return None
    else:
        drifted, lines = settings_drift(record.get("settings"), args["settings"], list(record.get("drifted", [])),
                                        list(record.get("drift", [])))
    return {"converged": not drifted, "drift": lines[:SHOWN], "drifted": drifted}


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        # Checked here too, with the module's own spec: the check may be answered without the module.
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        state = args["state"]
        if state == "changing":
            result.update(changed=False, converged=False, drift=[], drifted=[], ansible_facts=dict(FORGET))
            return result
        if state == "check" and not expands(self._task.args):
            evidence = (task_vars or {}).get("ansible_facts", {}).get("gpubox_host_evidence")
            answer = answer_from(evidence, args, play_id(self._task))
            if answer is not None:
                result.update(changed=False, read="at the play's start (gpubox.box.host_gather)", **answer)
                if not answer["converged"]:
                    result["ansible_facts"] = dict(FORGET)
                return result
        result.update(self._execute_module(task_vars=task_vars))
        if state != "check" or not result.get("converged"):
            result.setdefault("ansible_facts", {}).update(FORGET)
        return result
