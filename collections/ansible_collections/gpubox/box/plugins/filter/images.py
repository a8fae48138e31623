"""Baked images, as filters: gpubox.box.image_tags (bake.yml's tags for the image it makes).

The decisions live in module_utils/box_images.py, unit-tested there; these only hand them to the playbooks.
"""

from ansible_collections.gpubox.box.plugins.module_utils import box_images


def image_tags(base, installed=None):
    """The plan's tags for the image, with what configure had installed on the box (bake's host play read it)."""
    return box_images.image_tags(base, installed)


class FilterModule:
    def filters(self):
        return {"image_tags": image_tags}
