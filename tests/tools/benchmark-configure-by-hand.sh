#!/bin/bash
# The benchmark's baseline, not part of gpubox: the installs configure.yml does on a fresh CPU stand-in
# (scripts/standin.py's HOST_SETTINGS: venvs through the pip cache, the default tensorflow preset's CPU wheels,
# JupyterLab as a service, auto-stop's timer), done by a plain shell script over one SSH login, one after the other.
# No checks, no idempotence, no refusals, no GPU check: what a careful person would type, as one script.
# Usage: benchmark-configure-by-hand.sh SSH_PORT PRIVATE_KEY   (the stand-in on 127.0.0.1, user ubuntu)
set -o errexit -o nounset -o pipefail
port=$1
key=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
autostop=$(base64 -w0 "$repo/roles/autostop/files/gpubox-autostop.py")

ssh -p "$port" -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
  ubuntu@127.0.0.1 sudo bash -s <<EOF
set -o errexit -o nounset -o pipefail
apt-get install -y -q python3 python3-venv ca-certificates >/dev/null
install -d -m 0755 /opt/envs /etc/gpubox /usr/local/share/jupyter/kernels/tensorflow
for env in jupyter tensorflow; do
  python3 -m venv /opt/envs/\$env
  printf '[global]\nfind-links = /var/cache/pip/wheels\ncert = /etc/gpubox-test/corporate-ca.crt\ncache-dir = /var/cache/pip\n' \
    > /opt/envs/\$env/pip.conf
done
/opt/envs/jupyter/bin/python -m pip install -q --disable-pip-version-check jupyterlab==4.6.6
/opt/envs/tensorflow/bin/python -m pip install -q --disable-pip-version-check \
  keras==3.15.1 ipykernel==7.4.0 matplotlib==3.11.2 tensorflow-cpu==2.21.0
rm -rf /opt/envs/jupyter/share/jupyter/kernels/python3
cat > /usr/local/share/jupyter/kernels/tensorflow/kernel.json <<'JSON'
{"argv": ["/opt/envs/tensorflow/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "Python 3 (TensorFlow)", "language": "python"}
JSON

umask 077
echo "JUPYTER_TOKEN=\$(head -c 36 /dev/urandom | base64 | tr -dc A-Za-z0-9)" > /etc/gpubox/jupyter-token
umask 022
install -d -m 0755 /opt/envs/jupyter/etc/jupyter
cat > /opt/envs/jupyter/etc/jupyter/jupyter_server_config.py <<'PY'
c = get_config()
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.root_dir = "/data/notebooks"
c.KernelSpecManager.ensure_native_kernel = False
c.MappingKernelManager.default_kernel_name = "tensorflow"
PY
install -d -m 0755 -o ubuntu -g ubuntu /data /data/notebooks
cat > /etc/systemd/system/jupyter.service <<'UNIT'
[Unit]
After=network-online.target
[Service]
User=ubuntu
WorkingDirectory=/data/notebooks
Environment=PATH=/opt/envs/jupyter/bin:/usr/bin:/bin
EnvironmentFile=/etc/gpubox/jupyter-token
ExecStart=/opt/envs/jupyter/bin/jupyter lab
Restart=on-failure
[Install]
WantedBy=multi-user.target
UNIT

echo "$autostop" | base64 -d > /usr/local/bin/gpubox-autostop
chmod 0755 /usr/local/bin/gpubox-autostop
echo '{"minutes": 60, "max_hours": 0.0}' > /etc/gpubox/autostop.json
printf '[Service]\nType=oneshot\nExecStart=/usr/local/bin/gpubox-autostop --config /etc/gpubox/autostop.json check\n' \
  > /etc/systemd/system/gpubox-autostop.service
printf '[Timer]\nOnActiveSec=1min\nOnUnitActiveSec=1min\n[Install]\nWantedBy=timers.target\n' \
  > /etc/systemd/system/gpubox-autostop.timer
systemctl daemon-reload
systemctl enable --now jupyter.service gpubox-autostop.timer
for _ in \$(seq 120); do ss -Hltn 'sport = :8888' | grep -q . && exit 0; sleep 1; done
echo "JupyterLab did not listen" >&2
exit 1
EOF
