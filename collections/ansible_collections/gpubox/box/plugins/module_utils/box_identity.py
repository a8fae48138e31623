"""What makes a resource gpubox's, and which box's: exact tags, never a Name, a prefix or a wildcard.

Shared by the gather (which filters by these tags), the planner (which checks them again, exactly)
and the create module (which derives the ClientToken). Standard library only: modules import it too.
"""

import hashlib
import re

MANAGED_BY = "gpubox:managed-by"
MANAGER = "gpubox"
NAME = "gpubox:name"
OWNER = "gpubox:owner"
OWNER_ARN = "gpubox:owner-arn"
ROLE = "gpubox:role"
GENERATION = "gpubox:generation"
# On a data volume that launch -e move_data=true copied to another zone: the volume it was copied from.
MOVED_FROM = "gpubox:moved-from"
# The box's auto-stop settings, which launch and autostop.yml keep current, for status.yml to show.
AUTOSTOP_MINUTES = "gpubox:autostop-minutes"
MAX_HOURS = "gpubox:max-hours"

# A box name: 1 to 32 lower-case letters, digits and dashes, starting with a letter, not ending with a dash.
NAME_PATTERN = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")

# A login name that may go into an SSH config or a command line: a tag value may hold anything, newlines included.
SSH_USER_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# Instance states in which the box still exists (terminated ones are history).
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def name_problem(name):
    """'' when name can name a box, else what is wrong and how to fix it."""
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return ""
    return (
        f"name '{name}' is not a valid box name: use 1 to 32 lower-case letters, digits "
        "and dashes, starting with a letter and not ending with a dash, for example -e name=thesis-gpu."
    )


def ssh_user(tags, default):
    """The SSH user a resource's gpubox:ssh-user tag names when it is a plain login name, else default."""
    user = (tags or {}).get("gpubox:ssh-user")
    return user if isinstance(user, str) and SSH_USER_PATTERN.fullmatch(user) else default


def resource_name(name):
    """The name of the box's key pair and security group, and its instances' Name tag."""
    return f"gpubox-{name}"


def escape_filter_value(value):
    """An EC2 filter value that matches itself only: '*' and '?' are wildcards unless escaped."""
    return re.sub(r"([\\*?])", r"\\\1", str(value))


def box_tags(name, owner, owner_arn=""):
    """The tags that make a resource gpubox's, of box `name`, of `owner` (the caller's AWS user id)."""
    tags = {MANAGED_BY: MANAGER, NAME: name, OWNER: owner}
    if owner_arn:
        tags[OWNER_ARN] = owner_arn
    return tags


def is_gpubox(tags, name=None):
    """True when the tags say gpubox made the resource (for box `name`, when given), by exact values."""
    tags = tags or {}
    return tags.get(MANAGED_BY) == MANAGER and (name is None or tags.get(NAME) == name)


# A role session named by the tool that assumed the role, after the clock: botocore-session-<seconds> (a profile
# with role_arn and no role_session_name), aws-vault's <nanoseconds>, aws-go-sdk-<nanoseconds>. Each session, and so
# each run, is another AWS user id.
GENERATED_SESSION = re.compile(r":(?:[a-z]+-)*\d{9,}$")


def owner_label(tags):
    """Who owns a resource, as its tags say: the user id (enforced by the IAM policy) and the ARN beside it."""
    owner, arn = (tags or {}).get(OWNER), (tags or {}).get(OWNER_ARN)
    if not owner:
        return "nobody (no gpubox:owner tag: an older gpubox made it)"
    return f"{owner} ({arn})" if arn else owner


def client_token(owner, name, resource, generation, salt=""):
    """The idempotency token of one creation: the same box, resource, generation and salt give the same token.

    Two runs that create the same box at once send the same token, so EC2 creates it once. A token stays
    spent for at least a day after its resource is gone, so each new resource of a box gets a new generation;
    the salt (the box's security group, which a teardown deletes) keeps a box launched again after a teardown
    from meeting its earlier tokens.
    """
    text = f"{owner}\n{name}\n{resource}\n{int(generation)}" + (f"\n{salt}" if salt else "")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"gpubox-{digest[:56]}"
