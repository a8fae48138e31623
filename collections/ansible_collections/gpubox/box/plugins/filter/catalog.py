"""Look-ups in gpubox's instance catalog (catalog/instance_types.yml), for templates.

The catalog is passed in as data (the roles that need it read catalog/instance_types.yml themselves); the functions
live in module_utils/box_catalog.py, where the planner uses them too.
"""

from ansible_collections.gpubox.box.plugins.module_utils.box_catalog import (
    current_alternatives,
    gpus_label,
    instance_type,
    nearest_instance_types,
)


class FilterModule:
    def filters(self):
        return {
            "instance_type": instance_type,
            "nearest_instance_types": nearest_instance_types,
            "current_alternatives": current_alternatives,
            "gpus_label": gpus_label,
        }
