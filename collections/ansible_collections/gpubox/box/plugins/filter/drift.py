"""gpubox.box.settings_digest: the digest of what a role was given, for gpubox.box.drift."""

import hashlib
import json
import re

NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]*)?$")


def _same_value(value):
    """A setting as the role reads it: 60, "60" and 60.0 are the same number (-e, an inventory and a file read back
    give them differently), "true" and True the same truth. Lists and dicts are compared as they are."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if NUMBER.match(text):
            return float(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    return value


def settings_digest(inputs, *more):
    """sha256 of a role's inputs ({name: value}, values read as the role reads them) and of anything more (the OS,
    a digest of the role's code), so that a change to any of them makes gpubox.box.drift run the role in full."""
    normalized = {name: _same_value(value) for name, value in (inputs or {}).items()}
    text = json.dumps([normalized, list(more)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FilterModule:
    def filters(self):
        return {"settings_digest": settings_digest}
