"""gpubox.box.box_plan: read what exists of a box in one pass (gather), then decide what to do (plan).

gather (module_utils/box_gather.py) reads by gpubox's exact tags; plan (module_utils/box_plan.py) is a pure
function, unit-tested on its own, that owns every refusal and the box record. This action runs both on the
controller, where the AWS half runs anyway (localhost): one task, one boto3 import and a handful of API calls,
instead of a module process per read. It fails with the plan's problems, before anything changes, and shows
its notes and warnings. See plugins/modules/box_plan.py for its documentation.
"""

import os

import yaml
from ansible.errors import AnsibleActionFail
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

from ansible_collections.gpubox.box.plugins.module_utils import box_gather
from ansible_collections.gpubox.box.plugins.module_utils import box_plan as planner

try:
    import boto3
    from botocore.config import Config
except ImportError:
    boto3 = None

ARGUMENT_SPEC = {
    # What to read (gather).
    "action": {"type": "str", "required": True,
               "choices": ["autostop", "bake", "find", "images", "launch", "start", "status", "stop", "teardown"]},
    "name": {"type": "str", "default": ""},
    "wanted_type": {"type": "str", "default": ""},
    "image_parameters": {"type": "list", "elements": "str", "default": []},
    "image_ids": {"type": "list", "elements": "str", "default": []},
    "ip_lookup_url": {"type": "str", "default": ""},
    "public_key": {"type": "path", "default": ""},
    "private_key": {"type": "path", "default": ""},
    # Set once for the whole AWS half, as module_defaults of the action group gpubox.box.aws.
    "region": {"type": "str", "aliases": ["aws_region"]},
    "endpoint_url": {"type": "str", "aliases": ["aws_endpoint_url"]},
    # What to decide with (plan).
    "settings": {"type": "dict", "required": True},
    # Read here rather than passed in: templating the whole catalog costs a tenth of a second on every command.
    "catalog": {"type": "path", "required": True},
    "images": {"type": "dict", "required": True},
}


PUBLIC_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def _public_key(path, key_pairs):
    """Whether the SSH public key exists and is one, and whether each key pair holds it. Its content is not
    returned: the file could hold a private key."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(16384).strip()
    except FileNotFoundError:
        return {"path": path, "exists": False, "valid": False}
    except OSError as e:
        raise AnsibleActionFail(f"Could not read the SSH public key {path}: {e}") from e
    fields = text.split()
    valid = len(text.splitlines()) == 1 and len(fields) >= 2 and fields[0] in PUBLIC_KEY_TYPES
    for key in key_pairs:
        # What AWS returns is type and key (and the comment it was imported with): compare the first two.
        key["matches_public_key"] = (key.pop("public_key") == " ".join(fields[:2])) if key.get("public_key") else None
    return {"path": path, "exists": True, "valid": valid}


def _public_ip(url):
    try:
        return open_url(url, timeout=10, http_agent="gpubox").read().decode().strip(), ""
    except Exception as e:  # any failure to ask becomes the planner's refusal, with this reason
        return "", str(e)


def load_catalog(path):
    """(instance families, quota groups) of catalog/instance_types.yml."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return data["gpubox_instance_families"], data["gpubox_quota_groups"]
    except (OSError, KeyError, yaml.YAMLError) as e:
        raise AnsibleActionFail(f"Could not read the instance catalog {path}: {e}") from e


def gather(args, families, quota_groups):
    """What exists, read with boto3 (credentials as boto3 finds them; region and endpoint from the task)."""
    if boto3 is None:
        raise AnsibleActionFail("gpubox needs boto3 on the controller: pip install -r requirements.txt")
    session = boto3.session.Session(region_name=args["region"] or None)
    config = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="gpubox")
    clients = {}

    def client(service):
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=args["endpoint_url"] or None, config=config)
        return clients[service]

    found = box_gather.gather(client, {**args, "region": session.region_name or ""}, families, quota_groups)
    if args["action"] == "launch":
        found["public_key"] = _public_key(args["public_key"], found.get("key_pairs", [])) if args["public_key"] else {}
        found["private_key_exists"] = bool(args["private_key"]) and os.path.exists(args["private_key"])
        if args["ip_lookup_url"]:
            found["public_ip"], found["public_ip_error"] = _public_ip(args["ip_lookup_url"])
    return found


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        families, quota_groups = load_catalog(args["catalog"])
        found = gather({**args, "adopt": args["settings"].get("adopt"), "market": args["settings"].get("market")},
                       families, quota_groups)
        plan = planner.plan({**args["settings"], "action": args["action"], "name": args["name"]}, found,
                            families, quota_groups, args["images"])
        result.update(changed=False, found=found, plan=plan)
        notices = plan["notes"] + plan["warnings"]
        if notices:
            result["warnings"] = notices
        if plan["problems"]:
            result.update(failed=True, msg=" ".join(plan["problems"]))
        return result
