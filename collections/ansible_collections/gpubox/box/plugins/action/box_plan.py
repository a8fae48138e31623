"""gpubox.box.box_plan: decide what to do, once, from what the gather found.

A thin shell around the pure planner (module_utils/box_plan.py, unit-tested on its own): it returns the plan,
fails with the plan's problems before anything changes, and shows its notes and warnings.
See plugins/modules/box_plan.py for its documentation.
"""

from ansible.plugins.action import ActionBase

from ansible_collections.gpubox.box.plugins.module_utils import box_plan as planner

ARGUMENT_SPEC = {
    "found": {"type": "dict", "required": True},
    "settings": {"type": "dict", "required": True},
    "families": {"type": "dict", "required": True},
    "quota_groups": {"type": "dict", "required": True},
    "images": {"type": "dict", "required": True},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        plan = planner.plan(args["settings"], args["found"], args["families"], args["quota_groups"], args["images"])
        result.update(changed=False, plan=plan)
        notices = plan["notes"] + plan["warnings"]
        if notices:
            result["warnings"] = notices
        if plan["problems"]:
            result.update(failed=True, msg=" ".join(plan["problems"]))
        return result
