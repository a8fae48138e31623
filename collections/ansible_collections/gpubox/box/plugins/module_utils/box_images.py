"""gpubox's baked images: the decisions about the AMIs bake.yml makes from a configured box.

Pure functions, like the planner that calls them (module_utils/box_plan.py): no AWS call and no file access, so each
case is a table-driven unit test (tests/unit/test_box_images.py).

An image is gpubox's, and yours, only by exact tags, as every gpubox resource: gpubox:managed-by=gpubox,
gpubox:role=image and gpubox:owner = your AWS user id (gpubox:name names the box it was made from). Its snapshots are
deleted only when they carry the same tags. The gather (box_gather.read_baked_images) describes each image as
  {"id", "name", "state", "architecture", "created", "root_device_name", "root_size", "tags",
   "snapshots": [{"id", "size", "device"}]}
and each snapshot (box_gather.read_snapshots) as {snapshot id: {"size", "tags", "state", "description"}}.
"""

import re
from datetime import datetime, timezone

from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity

ROLE = "image"
OS = "gpubox:os"
ARCH = "gpubox:arch"
SOURCE_INSTANCE = "gpubox:source-instance"
# What the image was made from (the box's own image tags: its AMI and kind), and what configure had installed on it.
BASE_AMI = "gpubox:base-ami"
BASE_IMAGE = "gpubox:base-image"
DRIVER = "gpubox:driver"
CUDA = "gpubox:cuda"
ENVS = "gpubox:envs"
INSTALLED = "gpubox:installed"
# AWS's limit on a tag value.
MAX_TAG_VALUE = 256
# EBS snapshot storage in us-east-1, USD per GiB-month (the ec2_box role passes its own figure).
SNAPSHOT_USD_PER_GIB_MONTH = 0.05
# States of an image that is still being made, and of one that can be launched.
PENDING = ("pending",)
AVAILABLE = "available"


def _as_float(value, default):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def price(settings):
    """USD per GiB-month of snapshot storage, from the settings (an estimate)."""
    return _as_float((settings or {}).get("snapshot_usd_per_gib_month"), SNAPSHOT_USD_PER_GIB_MONTH)


def _moment(stamp):
    if isinstance(stamp, datetime):
        moment = stamp
    else:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def image_name(name, now, taken=()):
    """gpubox-NAME-YYYYMMDD-HHMM (UTC); the seconds are added when that name is taken (two bakes in a minute), then a
    counter. AMI names are unique per account and region."""
    moment = _moment(now)
    base = f"gpubox-{name}-{moment:%Y%m%d-%H%M}"
    candidates = [base, f"{base}-{moment:%S}"] + [f"{base}-{moment:%S}-{n}" for n in range(2, 100)]
    return next(c for c in candidates if c not in set(taken))


def tag_value(value):
    """A tag value as AWS takes it: a string of at most 256 characters."""
    return str(value)[:MAX_TAG_VALUE]


def is_yours(image, owner, name=None):
    """True when the image carries gpubox's image tags with your owner (and box `name`, when given), exactly."""
    tags = (image or {}).get("tags") or {}
    return (bool(owner) and identity.is_gpubox(tags, name) and tags.get(identity.ROLE) == ROLE
            and tags.get(identity.OWNER) == owner)


def size_gib(image):
    """The image's storage: the sizes of its snapshots' volumes (EBS bills the blocks in use, up to that)."""
    return sum(int(s.get("size") or 0) for s in (image or {}).get("snapshots") or [])


def root_size_gib(image):
    """GiB of the image's root disk (the snapshot of its root device): a box launched from it needs at least that."""
    image = image or {}
    root = image.get("root_device_name")
    sizes = [int(s.get("size") or 0) for s in image.get("snapshots") or [] if root and s.get("device") == root]
    return sizes[0] if sizes else int(image.get("root_size") or 0)


def monthly_usd(gib, usd_per_gib_month=SNAPSHOT_USD_PER_GIB_MONTH):
    return round(gib * usd_per_gib_month, 2)


def _newest_first(images):
    # Creation time, then the name (which carries the minute, and the seconds when it had to), then the id.
    return sorted(images, key=lambda i: (str(i.get("created", "")), i.get("name", ""), i.get("id", "")), reverse=True)


def _os_arch(image):
    tags = image.get("tags") or {}
    return tags.get(OS, "?"), image.get("architecture") or tags.get(ARCH, "?")


def choose_baked_image(images, os_name, architecture, owner, region=""):
    """(image, problem) for ami=baked: the newest of your gpubox images that is available, for the OS (its gpubox:os
    tag) and the architecture; none: a refusal that says how to make one."""
    where = f" in {region}" if region else ""
    mine = [i for i in images or [] if is_yours(i, owner)]
    matching = [i for i in mine if _os_arch(i) == (os_name, architecture)]
    available = [i for i in matching if i.get("state") == AVAILABLE]
    if available:
        chosen = _newest_first(available)[0]
        # root_size: the GiB of its root snapshot; the launch's root disk must be at least that (EC2 refuses less).
        return {**chosen, "root_size": root_size_gib(chosen)}, ""
    if any(i.get("state") in PENDING for i in matching):
        return None, (f"Your image for {os_name} ({architecture}){where} is still being made: wait until "
                      "ansible-playbook images.yml shows it available, then run launch again. Nothing was created.")
    others = sorted({_os_arch(i)[0] for i in mine if i.get("state") == AVAILABLE and _os_arch(i)[1] == architecture})
    also = f" You have images for {', '.join(others)}: pass that os with -e os=..." if others else ""
    return None, (f"You have no baked gpubox image for {os_name} ({architecture}){where}: make one from a configured box "
                  "with ansible-playbook bake.yml -e name=NAME (ansible-playbook images.yml lists yours), or launch "
                  f"with -e ami=dlami.{also} Nothing was created.")


def image_tags(base, installed=None):
    """The image's tags: the plan's (gpubox's, the OS, the architecture, the source) and what configure had installed
    on the box, as the bake's host play read it (empty: not read, the box was stopped or did not answer). Every value
    is a string within AWS's 256 characters."""
    tags = dict(base or {})
    installed = installed or {}
    if installed.get("read"):
        tags[DRIVER] = installed.get("driver") or "none"
        tags[CUDA] = installed.get("cuda") or "none"
        tags[ENVS] = " ".join(sorted(installed.get("envs") or [])) or "none"
        tags[INSTALLED] = "read from the box"
    else:
        tags[INSTALLED] = "unknown"
    return {k: tag_value(v) for k, v in tags.items() if v not in (None, "")}


def image_users(images, instances):
    """{image id: [ids of the live instances launched from it]}."""
    ids = {i.get("id") for i in images}
    users = {}
    for instance in instances or []:
        if (instance.get("state") or {}).get("name") in identity.LIVE_STATES and instance.get("image_id") in ids:
            users.setdefault(instance["image_id"], []).append(instance.get("instance_id", ""))
    return {k: sorted(v) for k, v in users.items()}


def _box_os_arch(image):
    return ((image.get("tags") or {}).get(identity.NAME, "?"),) + _os_arch(image)


def prune_selection(images, keep):
    """(doomed, kept) of your images: per box name, OS and architecture (so that pruning never takes one box's last
    image because another box has newer ones; ami=baked picks the newest per OS and architecture of them all), the
    newest `keep` available ones are kept; older ones, and failed ones, go. An image still being made is kept and does
    not count."""
    groups = {}
    for image in images:
        groups.setdefault(_box_os_arch(image), []).append(image)
    doomed, kept = [], []
    for group in groups.values():
        left = keep
        for image in _newest_first(group):
            if image.get("state") in PENDING:
                kept.append(image)
            elif image.get("state") == AVAILABLE and left > 0:
                kept.append(image)
                left -= 1
            else:
                doomed.append(image)
    return _newest_first(doomed), _newest_first(kept)


def _created(image):
    try:
        return f"{_moment(image.get('created')):%Y-%m-%d %H:%M}"
    except ValueError:
        return "?"


def describe(image, usd_per_gib_month):
    gib = size_gib(image)
    return f"image {image.get('id')} ({image.get('name')}, {gib} GiB, about ${monthly_usd(gib, usd_per_gib_month):.2f} a month)"


def image_lines(images, usd_per_gib_month, users=None):
    """Lines of a table of images: name, id, box, OS, architecture, created (UTC), state, size, estimated $/month, and
    the live instances launched from it."""
    users = users or {}
    header = ("NAME", "IMAGE ID", "BOX", "OS", "ARCH", "CREATED (UTC)", "STATE", "SIZE GIB", "EST. $/MONTH", "IN USE BY")
    rows = []
    for image in sorted(images, key=lambda i: ((i.get("tags") or {}).get(identity.NAME, ""), str(i.get("created", "")))):
        gib = size_gib(image)
        os_name, arch = _os_arch(image)
        rows.append((image.get("name", ""), image.get("id", ""), (image.get("tags") or {}).get(identity.NAME, "?"),
                     os_name, arch, _created(image), image.get("state", ""), gib,
                     f"{monthly_usd(gib, usd_per_gib_month):.2f}", ", ".join(users.get(image.get("id"), [])) or "-"))
    if not rows:
        return ["You have no baked gpubox images in this region: ansible-playbook bake.yml -e name=NAME makes one."]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    total = sum(size_gib(i) for i in images)
    return (["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
            + [f"{len(rows)} image{'s' if len(rows) != 1 else ''}, {total} GiB of snapshots: about "
               f"${monthly_usd(total, usd_per_gib_month):.2f} a month (an estimate at ${usd_per_gib_month} per GiB-month; "
               "EBS bills the blocks in use, often less)."])


def plan_removal(result, doomed, snapshots, owner, usd_per_gib_month, users=None):
    """Fill the plan's image removal. image_removals: one entry per image, {"image_id", "snapshot_ids"}, applied one
    image at a time (deregister it, then delete its snapshots: EC2 refuses to delete the snapshot of a registered
    image), so that an interrupted removal leaves at most one image's snapshots (images.yml then lists them as left
    over). Only snapshots with your gpubox tags are deleted. deregister_image_ids and delete_snapshot_ids list the same,
    flat. Returns the removal's lines."""
    users = users or {}
    snapshots = snapshots or {}
    lines = []
    for image in doomed:
        result.setdefault("deregister_image_ids", []).append(image["id"])
        removal = {"image_id": image["id"], "snapshot_ids": []}
        result.setdefault("image_removals", []).append(removal)
        line = describe(image, usd_per_gib_month)
        if users.get(image["id"]):
            line += (f", in use by {', '.join(users[image['id']])}: deregistered all the same (AWS allows it; the "
                     "instance runs, stops and starts as before, but no new box can be launched from the image)")
        lines.append(line)
        for snapshot in image.get("snapshots") or []:
            tags = (snapshots.get(snapshot["id"]) or {}).get("tags") or {}
            if identity.is_gpubox(tags) and tags.get(identity.OWNER) == owner:
                result.setdefault("delete_snapshot_ids", []).append(snapshot["id"])
                removal["snapshot_ids"].append(snapshot["id"])
            else:
                result.setdefault("kept", []).append(
                    f"Kept snapshot {snapshot['id']} of image {image['id']}: it does not carry your gpubox tags, so gpubox "
                    "leaves it alone (delete it in the EC2 console if it is yours).")
    return lines


def left_over_snapshots(images, snapshots, owner, name=None):
    """Your image snapshots that no registered image uses (a removal interrupted between deregistering an image and
    deleting its snapshots, or an image deregistered in the console): [{"id", "size", "box"}], oldest id first. Only
    snapshots with your exact gpubox image tags (gpubox:role=image, your owner; box `name` when given). One still
    being made, or one whose description names an image that exists (CreateImage's "... for ami-..."), is not one."""
    used = {s.get("id") for i in images or [] for s in i.get("snapshots") or []}
    image_ids = {i.get("id") for i in images or [] if i.get("id")}
    left = []
    for snapshot_id, snapshot in sorted((snapshots or {}).items()):
        tags = snapshot.get("tags") or {}
        if (snapshot_id in used or not identity.is_gpubox(tags, name) or tags.get(identity.ROLE) != ROLE
                or not owner or tags.get(identity.OWNER) != owner or snapshot.get("state") == "pending"
                or any(i in str(snapshot.get("description") or "") for i in image_ids)):
            continue
        left.append({"id": snapshot_id, "size": int(snapshot.get("size") or 0), "box": tags.get(identity.NAME, "?")})
    return left


def _snapshot_label(snapshot, usd_per_gib_month):
    return (f"snapshot {snapshot['id']} of box '{snapshot['box']}' ({snapshot['size']} GiB, about "
            f"${monthly_usd(snapshot['size'], usd_per_gib_month):.2f} a month, left over: no registered image uses it)")


def left_over_lines(left, usd_per_gib_month, remove_with):
    """Lines that list the left-over snapshots, what they cost, and how to remove them."""
    if not left:
        return []
    gib = sum(s["size"] for s in left)
    return ([f"{len(left)} left-over image snapshot{'s' if len(left) != 1 else ''} (no registered image uses "
             f"{'them' if len(left) != 1 else 'it'}; a removal was interrupted, or an image was deregistered elsewhere): "
             f"{gib} GiB, about ${monthly_usd(gib, usd_per_gib_month):.2f} a month. {remove_with} deletes "
             f"{'them' if len(left) != 1 else 'it'}."]
            + [f"  {_snapshot_label(s, usd_per_gib_month)}" for s in left])


def plan_left_over(result, left, usd_per_gib_month):
    """Doom the left-over snapshots: delete_left_over_snapshot_ids, and the change deregister_images (what runs
    delete_images.yml, which removes the images and then these). Returns the lines."""
    result["delete_left_over_snapshot_ids"] = [s["id"] for s in left]
    if left and "deregister_images" not in result["changes"]:
        result["changes"].append("deregister_images")
    return [_snapshot_label(s, usd_per_gib_month) for s in left]


def parse_keep(value):
    """(N, problem) of prune_keep; (None, '') when it is not given."""
    text = str(value if value is not None else "").strip()
    if not text:
        return None, ""
    if re.fullmatch(r"[0-9]+", text):
        return int(text), ""
    return None, (f"prune_keep '{text}' is not a whole number: pass how many images to keep per OS and architecture, "
                  "for example -e prune_keep=2 (0 removes them all). Nothing was changed.")


def _removal_prompt(result):
    """What the prompt before a removal lists: every image and left-over snapshot that goes."""
    return list(result.get("removed") or [])


def plan_images(result, settings, found, caller):
    """images.yml: a table of your gpubox images in the region (-e name=NAME: box NAME's), and your left-over image
    snapshots; with prune_keep, all but the newest N per box, OS and architecture are deregistered, each image's
    snapshots deleted after it, and the left-over snapshots deleted (after a prompt that lists them, unless
    confirm=true)."""
    owner = caller.get("user_id", "")
    of = str(settings.get("images_of") or "")
    usd = price(settings)
    every = [i for i in found.get("baked_images", []) if is_yours(i, owner)]
    mine = [i for i in every if is_yours(i, owner, of or None)]
    users = image_users(mine, found.get("instances", []))
    left = left_over_snapshots(every, found.get("snapshots"), owner, of or None)
    result["lines"] = image_lines(mine, usd, users) + left_over_lines(
        left, usd, f"ansible-playbook images.yml{' -e name=' + of if of else ''} -e prune_keep=N")
    keep, problem = parse_keep(settings.get("prune_keep"))
    if problem:
        result["problems"].append(problem)
        return result
    result["deregister_image_ids"], result["delete_snapshot_ids"], result["removed"] = [], [], []
    result["image_removals"], result["delete_left_over_snapshot_ids"] = [], []
    if keep is None:
        return result
    doomed, kept = prune_selection(mine, keep)
    result["removed"] = plan_removal(result, doomed, found.get("snapshots"), owner, usd, users)
    result["removed"] += plan_left_over(result, left, usd)
    if doomed and "deregister_images" not in result["changes"]:
        result["changes"].append("deregister_images")
    if doomed or left:
        gib = sum(size_gib(i) for i in doomed) + sum(s["size"] for s in left)
        what = [f"{len(doomed)} image{'s' if len(doomed) != 1 else ''} and their snapshots"] if doomed else []
        what += [f"{len(left)} left-over snapshot{'s' if len(left) != 1 else ''}"] if left else []
        result["removed_summary"] = (f"Removed {' and '.join(what)} ({gib} GiB, about ${monthly_usd(gib, usd):.2f} a "
                                     f"month); kept {len(kept)} image{'s' if len(kept) != 1 else ''} (the newest {keep} "
                                     "per box, OS and architecture).")
        result["prompt"] = _removal_prompt(result)
    else:
        result["notes"].append(f"Nothing to prune: no more than {keep} available image{'s' if keep != 1 else ''} per "
                               "box, OS and architecture, and no left-over snapshots.")
    return result


def teardown_images(result, settings, found, box):
    """teardown: the box's images (gpubox:name, the box owner's) and its left-over image snapshots. With
    delete_images=true they are doomed (the prompt lists them; image_removals and delete_left_over_snapshot_ids say
    what goes, change deregister_images), but an image still being made is kept (said in kept);
    an image that a live instance of yours runs from, under any box name, is said to be in use. Without it they are
    kept, and the plan says what they cost and how to remove them."""
    usd = price(settings)
    mine = _newest_first([i for i in found.get("baked_images", []) if is_yours(i, box.owner, box.name)])
    left = left_over_snapshots(found.get("baked_images", []), found.get("snapshots"), box.owner, box.name)
    for key in ("deregister_image_ids", "delete_snapshot_ids", "image_removals", "delete_left_over_snapshot_ids"):
        result.setdefault(key, [])
    if not mine and not left:
        return result
    delete = str(settings.get("delete_images", "")).strip().lower() in ("1", "true", "yes", "on", "y")
    if delete:
        pending = [i for i in mine if i.get("state") in PENDING]
        doomed = [i for i in mine if i.get("state") not in PENDING]
        # The box's own instances and every live one of yours (live_instances: a clone runs under another box name).
        instances = {i.get("instance_id"): i for i in found.get("instances", []) + found.get("live_instances", [])}
        users = image_users(doomed, list(instances.values()))
        result["doomed"].extend(plan_removal(result, doomed, found.get("snapshots"), box.owner, usd, users))
        result["doomed"].extend(plan_left_over(result, left, usd))
        if doomed and "deregister_images" not in result["changes"]:
            result["changes"].append("deregister_images")
        result["kept"].extend(
            f"Kept image {i['id']} ({i.get('name')}): it is still being made. When ansible-playbook images.yml shows it "
            f"available, ansible-playbook images.yml -e name={box.name} -e prune_keep=0 removes it." for i in pending)
    else:
        if mine:
            gib = sum(size_gib(i) for i in mine)
            result["kept"].append(
                f"Kept {len(mine)} image{'s' if len(mine) != 1 else ''} of box '{box.name}' ({gib} GiB of snapshots, "
                f"about ${monthly_usd(gib, usd):.2f} a month): ansible-playbook images.yml -e name={box.name} -e "
                f"prune_keep=0, or ansible-playbook teardown.yml -e name={box.name} -e delete_images=true, removes them.")
        result["kept"].extend(left_over_lines(left, usd, f"ansible-playbook teardown.yml -e name={box.name} -e "
                                                         "delete_images=true"))
    return result
