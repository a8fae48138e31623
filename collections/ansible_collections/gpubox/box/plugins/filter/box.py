"""The box record, as a filter: instance | gpubox.box.box_record.

The same function builds the record in the planner (module_utils/box_plan.py) and in the aws_ec2
inventory's compose, so both hand the host side the same variables.
"""

from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils import box_plan as planner


def box_record(instance, families=None, quota_groups=None):
    """The box record of one instance (DescribeInstances in snake_case, as aws_ec2 and the gather return it)."""
    return planner.box_record(instance, families, quota_groups)


def box_name(tags):
    """The box name in a resource's tags when gpubox made it and the name is one; '' otherwise."""
    name = (tags or {}).get(identity.NAME, "")
    return name if identity.is_gpubox(tags) and not identity.name_problem(name) else ""


class FilterModule:
    def filters(self):
        return {
            "box_record": box_record,
            "box_name": box_name,
            "aws_error_code": planner.aws_error_code,
            "price_label": planner.price_label,
        }
