#!/usr/bin/env bash
# ansible-test sanity on the gpubox.box collection (make lint). ansible-test needs the collection under an
# ansible_collections/ root with the collections it uses beside it (amazon.aws, from the virtualenv), and installs its
# checkers into virtualenvs from the package index, bootstrapping pip with a script from a host these machines cannot
# reach: tests/tools/get_pip.py stands in for it.
set -o errexit -o nounset -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
amazon=$(python -c 'import ansible_collections.amazon.aws as c; print(list(c.__path__)[0])') || {
  echo "ansible-test-sanity: amazon.aws is not importable with $(command -v python): run make setup" >&2; exit 1; }
python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The bootstrap script for the pip version ansible-test installs, where ansible-test looks for it. Ours only for
# this run: put there when none is, removed on exit (another project's ansible-test must not find it later).
cache=$(python - "$python_version" <<'PY'
import os, sys, types
from ansible_test._internal.python_requirements import get_venv_packages
pip = get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))["pip"]
print(os.path.expanduser("~/.ansible/test/cache/get_pip_%s.py" % pip.replace(".", "_")))
PY
)
stand_in="" work=""
clean_up() {
  [ -z "$work" ] || rm -rf "$work"
  [ -z "$stand_in" ] || rm -f "$stand_in" "$(dirname "$stand_in")/__pycache__/$(basename "$stand_in" .py)".*.pyc
}
trap clean_up EXIT
if [ ! -e "$cache" ]; then
  mkdir -p "$(dirname "$cache")"
  stand_in=$cache
  cp "$repo/tests/tools/get_pip.py" "$cache"
fi
# Copies outside the repository: inside it, ansible-test would list the files with git, which ignores build/.
work=$(mktemp -d)
root=$work/ansible_collections
mkdir -p "$root/gpubox" "$root/amazon"
cp -r "$repo/collections/ansible_collections/gpubox/box" "$root/gpubox/box"
cp -r "$amazon" "$root/amazon/aws"
find "$root" -name __pycache__ -prune -exec rm -rf {} +
cd "$root/gpubox/box"
ansible-test sanity --venv --python "$python_version" --color no
