#!/usr/bin/env bash
# ansible-test sanity on the gpubox.box collection (make lint). ansible-test needs the collection under an
# ansible_collections/ root with the collections it uses beside it (amazon.aws, from the virtualenv), and bootstraps
# pip with a script from a host these machines cannot reach: tests/tools/get_pip.py stands in for it.
set -o errexit -o nounset -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
# ansible-test's virtualenvs and caches, kept between runs (build/ is not in git).
export HOME=$repo/build/ansible-test-home
mkdir -p "$HOME/.ansible/test/cache"
cp "$repo/tests/tools/get_pip.py" "$HOME/.ansible/test/cache/get_pip_24_2.py"
# Copies outside the repository: inside it, ansible-test would list the files with git, which ignores build/.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/ansible_collections
mkdir -p "$root/gpubox" "$root/amazon"
amazon=$(python -c 'import ansible_collections.amazon.aws as c; print(list(c.__path__)[0])')
cp -r "$repo/collections/ansible_collections/gpubox/box" "$root/gpubox/box"
cp -r "$amazon" "$root/amazon/aws"
find "$root" -name __pycache__ -prune -exec rm -rf {} +
cd "$root/gpubox/box"
python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --venv --python "$python_version" --color no
