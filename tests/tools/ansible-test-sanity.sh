#!/usr/bin/env bash
# ansible-test sanity on the gpubox.box collection (make lint). ansible-test needs the collection under an
# ansible_collections/ root with the collections it uses beside it (amazon.aws, from the virtualenv), and installs its
# checkers into virtualenvs from the package index, bootstrapping pip with a script from a host these machines cannot
# reach: tests/tools/get_pip.py stands in for it, where ansible-test looks first (a real one there is left alone).
set -o errexit -o nounset -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
amazon=$(python -c 'import ansible_collections.amazon.aws as c; print(list(c.__path__)[0])') || {
  echo "ansible-test-sanity: amazon.aws is not importable with $(command -v python): run make setup" >&2; exit 1; }
pip_version=$(python - <<'PY'
import pathlib, re, ansible_test
source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -e "$cache" ] || grep -q "Stand-in for ansible-test's pip bootstrap script" "$cache"; then
  mkdir -p "$(dirname "$cache")"
  cp "$repo/tests/tools/get_pip.py" "$cache"
fi
# Copies outside the repository: inside it, ansible-test would list the files with git, which ignores build/.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/ansible_collections
mkdir -p "$root/gpubox" "$root/amazon"
cp -r "$repo/collections/ansible_collections/gpubox/box" "$root/gpubox/box"
cp -r "$amazon" "$root/amazon/aws"
find "$root" -name __pycache__ -prune -exec rm -rf {} +
cd "$root/gpubox/box"
python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --venv --python "$python_version" --color no
