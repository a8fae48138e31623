"""A reverse proxy on 127.0.0.1 in front of moto server: records the AWS calls and adds EC2's ClientToken idempotency.

Point AWS_ENDPOINT_URL at `proxy.url`. Every request is forwarded to moto and moto's answer returned unchanged;
each signed request is recorded in `proxy.calls` as (IAM service prefix, API action), e.g. ("ec2", "RunInstances"),
and with its form fields in `proxy.requests`, so that a test can assert on what gpubox asked AWS for where moto
does not act on it (spot market options). `proxy.refuse()` answers chosen requests with an AWS error instead of
moto, as EC2 does when it has no capacity in a zone.

moto ignores ClientToken, so RunInstances or CreateVolume repeated with the same token would create a second
instance or volume. The proxy answers such repeats itself, as EC2 documents: the same token with the same
parameters gets the first answer again, the same token with other parameters gets IdempotentParameterMismatch.
"""

import contextlib
import http.client
import re
import socketserver
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Credential scope service -> IAM service prefix, where they differ. The services gpubox calls (ec2, sts, iam,
# ssm, servicequotas) sign with their IAM prefix; a scope not listed here is kept as it is.
IAM_PREFIX = {"monitoring": "cloudwatch"}
# The EC2 actions whose ClientToken the proxy honours.
IDEMPOTENT_ACTIONS = {"RunInstances", "CreateVolume"}
# Headers that describe one connection, not the message: never passed on (RFC 9110, section 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
              "te", "trailer", "transfer-encoding", "upgrade"}
# Nor is Content-Length: the proxy sets it from the body it passes on (read whole, never chunked).
NOT_PASSED_ON = HOP_BY_HOP | {"content-length"}
# Credential=AKID/20261201/us-east-1/ec2/aws4_request in a SigV4 Authorization header.
CREDENTIAL = re.compile(r"Credential=[^/,\s]+/[^/,\s]+/([^/,\s]+)/([^/,\s]+)/aws4_request")
UPSTREAM_TIMEOUT = 120  # seconds
MISMATCH = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>IdempotentParameterMismatch</Code>'
    "<Message>Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."
    "</Message></Error></Errors><RequestID>{}</RequestID></Response>"
)


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: list  # (name, value) pairs as sent to the client, Content-Length included
    body: bytes


def _response(status, reason, content_type, body):
    return Response(status, reason, [("Content-Type", content_type), ("Content-Length", str(len(body)))], body)


@dataclass
class _Token:
    """One client token's first successful request; `lock` makes a repeat wait until that request is answered."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    params: list = None
    response: Response = None


class AwsProxy:
    def __init__(self, upstream):
        parts = urllib.parse.urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port or 80, parts.path.rstrip("/"))
        self._lock = threading.Lock()
        self._tokens = {}
        self._holds = {}
        self._server = None
        self._thread = None
        self.url = None
        self.calls = []
        self.requests = []
        self._refusals = []
        self.idempotent_replays = 0

    def start(self):
        """Serve on a free port of 127.0.0.1 from a daemon thread; returns the proxy's URL."""
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-proxy", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def clear(self):
        """Forget the recorded calls and the client tokens (for a test that starts again on a reset moto)."""
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self._refusals.clear()
            self._tokens.clear()
            self._holds.clear()
            self.idempotent_replays = 0

    def hold(self, action, arrivals, timeout=60):
        """Make the next `arrivals` requests of `action` wait for one another (at most `timeout` s) before any is
        answered, so that two runs are sure to race there (a test of what two launches at once do)."""
        def release():
            with self._lock:
                self._holds.pop(action, None)
        with self._lock:
            self._holds[action] = threading.Barrier(arrivals, action=release, timeout=timeout)

    def refuse(self, action, code, message, when=lambda fields: True, times=None):
        """Answer the next `times` requests of `action` whose form fields satisfy `when` (all of them: None) with
        EC2's error `code`, as EC2 does, and without passing them to moto."""
        with self._lock:
            self._refusals.append({"action": action, "code": code, "message": message, "when": when, "left": times})

    def _refusal(self, action, fields):
        with self._lock:
            for refusal in self._refusals:
                if refusal["action"] == action and refusal["left"] != 0 and refusal["when"](fields):
                    if refusal["left"] is not None:
                        refusal["left"] -= 1
                    body = ('<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{}</Code><Message>{}'
                            "</Message></Error></Errors><RequestID>{}</RequestID></Response>").format(
                                refusal["code"], refusal["message"], uuid.uuid4())
                    return _response(400, "Bad Request", "text/xml", body.encode())
        return None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def answer(self, method, path, headers, body):
        """The response to one client request: headers is an email.message.Message, as the request handler has."""
        scope = CREDENTIAL.search(headers.get("Authorization", ""))
        if not scope:  # unsigned, such as moto's own /moto-api/: not an AWS call
            return self._forward(method, path, headers, body)
        region, service = scope.group(1), IAM_PREFIX.get(scope.group(2), scope.group(2))
        form = urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query, keep_blank_values=True)
        if headers.get_content_type() == "application/x-www-form-urlencoded":
            form += urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        fields = dict(form)
        target = headers.get("X-Amz-Target")
        # JSON protocol (ssm, servicequotas): X-Amz-Target: AmazonSSM.GetParameters. Query protocol: Action=...
        # REST services (s3) name the action in neither: recorded with action None.
        action = target.rpartition(".")[2] if target else fields.get("Action")
        with self._lock:
            self.calls.append((service, action))
            self.requests.append((service, action, fields))
            barrier = self._holds.get(action)
        if barrier is not None:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:  # the others did not come: go on alone
                pass
        refused = self._refusal(action, fields)
        if refused is not None:
            return refused
        token = fields.get("ClientToken")
        if service == "ec2" and action in IDEMPOTENT_ACTIONS and token:
            params = sorted((name, value) for name, value in form if name != "ClientToken")
            # Per Region, as on EC2: the same token in another Region is another request, not a mismatch.
            return self._idempotent((region, action, token), params, lambda: self._forward(method, path, headers, body))
        return self._forward(method, path, headers, body)

    def _idempotent(self, key, params, forward):
        with self._lock:
            token = self._tokens.setdefault(key, _Token())
        with token.lock:
            if token.response is None:
                response = forward()
                # Only a success binds the token: EC2 lets a failed request be retried with it.
                if 200 <= response.status < 300:
                    token.params, token.response = params, response
                return response
            if params != token.params:
                return _response(400, "Bad Request", "text/xml", MISMATCH.format(uuid.uuid4()).encode())
            with self._lock:
                self.idempotent_replays += 1
            return token.response

    def _forward(self, method, path, headers, body):
        host, port, base = self._upstream
        conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
        try:
            # The client's Host header goes through as it is: it is part of what SigV4 signed.
            conn.putrequest(method, base + path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name.lower() not in NOT_PASSED_ON:
                    conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            upstream = conn.getresponse()
            content = upstream.read()
        except (OSError, http.client.HTTPException) as e:
            return _response(502, "Bad Gateway", "text/plain", f"aws proxy: {base + path} on moto failed: {e}".encode())
        finally:
            conn.close()
        kept = [(n, v) for n, v in upstream.getheaders() if n.lower() not in NOT_PASSED_ON]
        # A HEAD response has no body: its Content-Length is moto's, not the length of what was read.
        length = upstream.getheader("Content-Length") if method == "HEAD" else str(len(content))
        if length is not None:
            kept.append(("Content-Length", length))
        return Response(upstream.status, upstream.reason, kept, content)


class _Server(ThreadingHTTPServer):
    # Several ansible-playbook processes, each with forks, may connect at once: more than the default backlog of 5.
    request_queue_size = 64

    def __init__(self, proxy):
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self):
        # HTTPServer's own also looks up the host's name (socket.getfqdn), which can ask DNS: tests stay on 127.0.0.1.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no keep-alive bookkeeping.
    protocol_version = "HTTP/1.0"

    def _handle(self):
        response = self.server.proxy.answer(self.command, self.path, self.headers, self._read_body())
        # send_response_only: moto's answer already has its own Date and Server headers.
        self.send_response_only(response.status, response.reason)
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers, up to the blank line
            pass
        return b"".join(chunks)

    def log_message(self, format, *args):
        pass  # quiet: one line per AWS call would drown pytest's output


@contextlib.contextmanager
def aws_proxy(upstream):
    """An AwsProxy in front of the moto server at upstream, started, and stopped afterwards."""
    with AwsProxy(upstream) as proxy:
        yield proxy
