"""gpubox.box.source_digest: a digest of a role's code, so that a role whose code changed runs in full again."""

DOCUMENTATION = r"""
name: source_digest
short_description: A digest of the files under some directories, and of this collection's plugins
description:
  - Hashes every file under the directories given (their paths relative to each directory, and their content), and
    the plugins of the gpubox.box collection, whose filters and modules the roles use. Compiled Python, READMEs and
    a role's meta/argument_specs.yml (descriptions of its inputs) are left out.
  - The roles put it in the settings digest of gpubox.box.drift, so that an upgraded gpubox never skips a role on
    the evidence of the old code's run.
options:
  _terms:
    description: Directories (a role's role_path).
    required: true
author: gpubox developers (@gpubox)
"""

EXAMPLES = r"""
- name: Show the digest of this role's code
  ansible.builtin.debug:
    msg: "{{ lookup('gpubox.box.source_digest', role_path) }}"
"""

RETURN = r"""
_raw:
  description: One sha256 hex digest.
  type: list
  elements: str
"""

import hashlib
import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase


PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A role's file that only documents and checks its inputs: editing a description must not re-run every box's roles.
DOCS_ONLY = {os.path.join("meta", "argument_specs.yml")}


def tree_digest(directories):
    digest = hashlib.sha256()
    for top in directories:
        if not os.path.isdir(top):
            raise AnsibleLookupError(f"source_digest: {top} is not a directory")
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, top)
                if name.endswith(".pyc") or name.startswith("README") or relative in DOCS_ONLY:
                    continue
                digest.update(relative.encode() + b"\0")
                with open(path, "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [tree_digest([*terms, PLUGINS])]
