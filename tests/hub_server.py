"""A local stand-in for the Hugging Face Hub's file endpoints, on 127.0.0.1 only (tests never use the internet).

It answers what `hf_hub_download` calls: HEAD and GET `/{repo_id}/resolve/{revision}/{filename}`, with the
Hub's headers (`X-Repo-Commit`, `X-Linked-Etag` = the LFS object's SHA-256, `X-Linked-Size`).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HostedFile:
    content: bytes
    advertised_sha256: str | None = None  # None: the real digest of `content`

    @property
    def etag(self) -> str:
        return self.advertised_sha256 or hashlib.sha256(self.content).hexdigest()


@dataclass
class FakeHub:
    files: dict[tuple[str, str], HostedFile] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def lookup(self, path: str) -> HostedFile | None:
        parts = unquote(path.split("?", 1)[0]).strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve" or parts[3] not in ("main", COMMIT):
            return None
        return self.files.get(("/".join(parts[:2]), "/".join(parts[4:])))


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            hub.requests.append((self.command, self.path))
            hosted = hub.lookup(self.path)
            if hosted is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hosted.etag}"')
            self.send_header("X-Linked-Etag", f'"{hosted.etag}"')
            self.send_header("X-Linked-Size", str(len(hosted.content)))
            self.send_header("Content-Length", str(len(hosted.content)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if with_body:
                self.wfile.write(hosted.content)

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(True)

        def log_message(self, *args) -> None:
            pass

    return Handler


def start(hub: FakeHub) -> FakeHub:
    """Serve `hub` on a free port of 127.0.0.1 in a daemon thread; stop with `stop(hub)`."""
    hub.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    threading.Thread(target=hub.server.serve_forever, daemon=True).start()
    return hub


def stop(hub: FakeHub) -> None:
    if hub.server is not None:
        hub.server.shutdown()
        hub.server.server_close()
