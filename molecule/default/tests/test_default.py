"""Behaviour a user relies on: JupyterLab on loopback with token auth, and a working TensorFlow kernel."""

import json
import shlex

SERVICE = "jupyter"
PORT = 8888
TOKEN_FILE = "/etc/gpubox/jupyter-token"
ENV_DIR = "/opt/envs/tensorflow"
NOTEBOOK = "/data/notebooks/gpubox-sample.ipynb"
LOGIN_USER = "ubuntu"


def _token(host):
    line = host.check_output("sudo -n cat %s", TOKEN_FILE).strip()
    assert line.startswith("JUPYTER_TOKEN=")
    return line.partition("=")[2]


def _get(host, path, token=None):
    """GET http://127.0.0.1:PORT/path inside the container; return (status, body)."""
    header = "-H %s" % shlex.quote("Authorization: token " + token) if token else ""
    out = host.check_output(
        "curl -sS -o /tmp/gpubox-body -w '%%{http_code}' %s http://127.0.0.1:%d%s; echo; cat /tmp/gpubox-body" % (header, PORT, path)
    )
    status, _, body = out.partition("\n")
    return int(status), body


def test_service_is_active_and_enabled(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_service_runs_as_the_login_user(host):
    assert host.check_output("systemctl show -p User --value %s", SERVICE) == LOGIN_USER


def test_listens_on_loopback_only(host):
    listeners = host.check_output("ss -Htln sport = :%s | awk '{print $4}'", str(PORT)).split()
    assert listeners == ["127.0.0.1:%d" % PORT]
    assert host.socket("tcp://127.0.0.1:%d" % PORT).is_listening
    assert not host.socket("tcp://0.0.0.0:%d" % PORT).is_listening
    assert not host.socket("tcp://:::%d" % PORT).is_listening


def test_api_needs_the_token(host):
    assert _get(host, "/api/kernelspecs")[0] == 403
    assert _get(host, "/api/kernelspecs", token="wrong-token")[0] == 403
    assert _get(host, "/api/status", token=_token(host))[0] == 200


def test_tensorflow_kernel_is_listed_and_default(host):
    status, body = _get(host, "/api/kernelspecs", token=_token(host))
    assert status == 200
    specs = json.loads(body)
    assert set(specs["kernelspecs"]) == {"tensorflow"}
    assert specs["default"] == "tensorflow"
    assert specs["kernelspecs"]["tensorflow"]["spec"]["display_name"] == "Python 3 (TensorFlow)"


def test_token_file_is_private(host):
    with host.sudo():
        token_file = host.file(TOKEN_FILE)
        assert token_file.user == "root"
        assert token_file.mode == 0o600
        assert len(token_file.content_string.strip()) >= 32


def test_token_is_not_in_the_journal(host):
    token = _token(host)
    journal = host.check_output("sudo -n journalctl -u %s --no-pager -o cat", SERVICE)
    assert token not in journal


def test_tensorflow_and_keras_fit_a_model_on_cpu(host):
    script = (
        "import numpy as np, tensorflow as tf, keras\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
        "m.compile(optimizer='adam', loss='mse')\n"
        "h = m.fit(np.random.rand(64, 4), np.random.rand(64, 1), epochs=2, verbose=0)\n"
        "print(tf.__version__, keras.__version__, len(h.history['loss']))\n"
    )
    cmd = host.run("CUDA_VISIBLE_DEVICES= %s/bin/python -c %s", ENV_DIR, script)
    assert cmd.rc == 0, cmd.stderr
    tf_version, keras_version, epochs = cmd.stdout.split()[-3:]
    assert keras_version.startswith("3.")
    assert epochs == "2"
    assert host.run("%s/bin/python -m pip show tensorflow-cpu", ENV_DIR).rc == 0


def test_sample_notebook_belongs_to_the_login_user(host):
    notebook = host.file(NOTEBOOK)
    assert notebook.is_file
    assert notebook.user == LOGIN_USER
    assert json.loads(notebook.content_string)["metadata"]["kernelspec"]["name"] == "tensorflow"


def test_sample_notebook_runs_in_the_tensorflow_kernel(host):
    cmd = host.run(
        "cd /tmp && /opt/envs/jupyter/bin/jupyter nbconvert --to notebook --execute "
        "--ExecutePreprocessor.timeout=300 --output /tmp/gpubox-sample-run.ipynb %s",
        NOTEBOOK,
    )
    assert cmd.rc == 0, cmd.stderr
    executed = json.loads(host.file("/tmp/gpubox-sample-run.ipynb").content_string)
    outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the loss plot is missing"
