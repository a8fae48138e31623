"""gpubox.box.ec2_box_create with attempts: try each launch of the plan in turn, one line each, as it happens.

GPU capacity runs out by zone and by type. The plan (module_utils/box_plan.py) lists the launches to try in
order (each zone that offers a type, each type the user gave, spot before on-demand with market=auto); this
action runs the module once per launch and prints one line for each (zone, type, market, AWS's answer) as soon as
it has it. Where AWS has no capacity (or the quota or the spot price is short) it goes on to the next; any other
failure ends the run. With retry until_up it sweeps again every interval until the timeout, like SkyPilot's
--retry-until-up. A failed launch creates nothing. Without attempts it is the module itself.
"""

import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


def _short(message, limit=160):
    text = " ".join(str(message or "").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# A limit of the account, not of a zone: the type and market it refused are not tried again in this run.
QUOTA_CODES = ("VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded")


def sweep(attempts, retry, launch, say, sleep=time.sleep, clock=time.monotonic):
    """The module's answer for the first launch that AWS accepts, or a failure: launch(attempt, look_first) runs the
    module for one; say(line) prints a line at once. The answer carries the lines (attempts) and the launch taken."""
    until_up = str(retry.get("until_up", False)).lower() in ("true", "yes", "1", "on")
    interval, timeout = int(retry.get("interval", 30)), int(retry.get("timeout", 3600))
    deadline = clock() + timeout
    lines, sweeps, over_quota, quota_answer = [], 0, set(), None
    while True:
        sweeps += 1
        for attempt in attempts:
            if (attempt.get("type"), attempt.get("market")) in over_quota:
                continue
            answer = launch(attempt, bool(lines))
            line = (f"{attempt['label']}: launched {answer.get('id', '')}" if not answer.get("failed")
                    else f"{attempt['label']}: {_short(answer.get('msg'))}")
            say(f"  launch {line}")
            lines.append(line)
            if not answer.get("failed") or not answer.get("capacity"):
                return {**answer, "attempts": lines, "attempt": {k: v for k, v in attempt.items() if k != "params"}}
            if answer.get("code") in QUOTA_CODES:
                over_quota.add((attempt.get("type"), attempt.get("market")))
                quota_answer = answer
        if len(over_quota) == len({(a.get("type"), a.get("market")) for a in attempts}):
            # Every type and market is over a quota: waiting does not help, and the quota's own message says what does.
            return {**quota_answer, "capacity": False, "attempts": lines}
        if not until_up or clock() + interval > deadline:
            break
        left = int(deadline - clock())
        say(f"  No capacity in any of them: sweep {sweeps + 1} in {interval} s (retry_until_up, {left // 60} min left "
            "of retry_timeout)")
        sleep(interval)
    tried = f"{len(attempts)} launch{'es' if len(attempts) > 1 else ''}" + (f", {sweeps} times" if sweeps > 1 else "")
    return {"failed": True, "changed": False, "capacity": True, "attempts": lines,
            "msg": f"AWS refused every launch gpubox tried ({tried}): {'; '.join(lines[-len(attempts):])}."}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        attempts = args.pop("attempts", None) or []
        retry = args.pop("retry", None) or {}
        if not attempts:
            result.update(self._execute_module(module_args=args, task_vars=task_vars))
            return result

        def launch(attempt, look_first):
            # One token for every launch of the box: a refused launch does not spend it, and a run at the same time
            # that launched with other settings makes EC2 answer IdempotentParameterMismatch, which the module
            # turns into "another run created it", never a second instance.
            module_args = {**args, "params": attempt["params"], "look_first": look_first}
            return self._execute_module(module_name="gpubox.box.ec2_box_create", module_args=module_args,
                                        task_vars=task_vars)

        result.update(sweep(attempts, retry, launch, display.display))
        return result
