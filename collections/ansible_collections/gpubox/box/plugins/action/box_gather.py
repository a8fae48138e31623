"""gpubox.box.box_gather: read what exists of a box, and what a decision about it needs, in one pass.

An action plugin, not a module: it runs in the controller's Ansible process, where the AWS half runs anyway
(localhost), so a whole gather costs one boto3 import and a handful of API calls instead of one module
process per read. See plugins/modules/box_gather.py for its documentation.
"""

from ansible.errors import AnsibleActionFail
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

from ansible_collections.gpubox.box.plugins.module_utils import box_gather

try:
    import boto3
    from botocore.config import Config
except ImportError:
    boto3 = None

ARGUMENT_SPEC = {
    "action": {"type": "str", "required": True, "choices": sorted(box_gather.READS)},
    "name": {"type": "str", "default": ""},
    "instance_types": {"type": "list", "elements": "str", "default": []},
    "wanted_type": {"type": "str", "default": ""},
    "image_parameters": {"type": "list", "elements": "str", "default": []},
    "image_ids": {"type": "list", "elements": "str", "default": []},
    "quota_groups": {"type": "dict", "default": {}},
    "ip_lookup_url": {"type": "str", "default": ""},
    "public_key": {"type": "path", "default": ""},
    # Set once for the whole AWS half, as module_defaults of the action group gpubox.box.aws.
    "region": {"type": "str", "aliases": ["aws_region"]},
    "endpoint_url": {"type": "str", "aliases": ["aws_endpoint_url"]},
}


def _public_key(path):
    try:
        with open(path, encoding="utf-8") as f:
            return {"path": path, "exists": True, "content": f.read().strip()}
    except FileNotFoundError:
        return {"path": path, "exists": False, "content": ""}
    except OSError as e:
        raise AnsibleActionFail(f"Could not read the SSH public key {path}: {e}") from e


def _public_ip(url):
    try:
        return open_url(url, timeout=10, http_agent="gpubox").read().decode().strip(), ""
    except Exception as e:  # any failure to ask becomes the planner's refusal, with this reason
        return "", str(e)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if boto3 is None:
            raise AnsibleActionFail("gpubox needs boto3 on the controller: pip install -r requirements.txt")
        session = boto3.session.Session(region_name=args["region"] or None)
        config = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="gpubox")
        clients = {}

        def client(service):
            if service not in clients:
                clients[service] = session.client(service, endpoint_url=args["endpoint_url"] or None, config=config)
            return clients[service]

        found = box_gather.gather(client, {**args, "region": session.region_name or ""})
        if args["action"] == "launch":
            found["public_key"] = _public_key(args["public_key"]) if args["public_key"] else {}
            if args["ip_lookup_url"]:
                found["public_ip"], found["public_ip_error"] = _public_ip(args["ip_lookup_url"])
        result.update(changed=False, found=found)
        return result
