"""scripts/standin.py's free ports: two servers of one test must never be told the same port."""

import standin


class _Socket:
    """A socket whose bind to port 0 gets the next port of a fixed list, as the kernel may give the same one twice."""

    ports = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def bind(self, address):
        self.port = _Socket.ports.pop(0)

    def getsockname(self):
        return ("127.0.0.1", self.port)


def test_a_port_is_never_handed_out_twice(monkeypatch):
    monkeypatch.setattr(standin, "_GIVEN_PORTS", set())
    monkeypatch.setattr(standin.socket, "socket", _Socket)
    _Socket.ports = [40001, 40001, 40001, 40002]
    assert [standin.free_port(), standin.free_port()] == [40001, 40002]
