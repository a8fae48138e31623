"""Jinja test: does a resource carry the given tags? Used to tell gpubox's resources from others."""


def contains_tags(tags, wanted):
    """True when the tag dict has every wanted key with the wanted value."""
    return all((tags or {}).get(k) == v for k, v in (wanted or {}).items())


class TestModule:
    def tests(self):
        return {"contains_tags": contains_tags}
