"""The boot server's HTTP server: serves `<state>/boot/http/`, a node's own files to it alone.

`nodes/<name>/` holds a node's late script with its SSH host key, so a request for it is
answered only when it comes from that node's address; iPXE binaries and the installer are
served to anyone on the provisioning network. Run as
`python -m blueprint.baremetal.httpserver ROOT BIND PORT NAME=ADDRESS...`.
"""

from __future__ import annotations

import functools
import http.server
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class NodeFileHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; `nodes/<name>/...` only to the address of node <name>."""

    node_addresses: dict[str, str] = {}  # noqa: RUF012 - set once per server class

    def _allowed(self) -> bool:
        parts = self.path.split("?", 1)[0].lstrip("/").split("/")
        if parts and parts[0] == "nodes":
            if len(parts) < 3:
                return False  # no listing of the nodes
            return self.node_addresses.get(parts[1]) == self.client_address[0]
        return True

    def do_GET(self) -> None:
        if not self._allowed():
            self.send_error(403, "this file is for another node")
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if not self._allowed():
            self.send_error(403, "this file is for another node")
            return
        super().do_HEAD()

    def list_directory(self, path: Any) -> Any:
        self.send_error(403, "no listing")
        return None

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.client_address[0]} {format % args}\n")
        sys.stderr.flush()


def serve(root: Path, bind: str, port: int, nodes: dict[str, str]) -> None:
    """Serve `root` on bind:port until stopped."""
    handler_class = type("SiteNodeFileHandler", (NodeFileHandler,), {"node_addresses": nodes})
    handler = functools.partial(handler_class, directory=str(root))
    server = http.server.ThreadingHTTPServer((bind, port), handler)
    sys.stderr.write(f"serving {root} on {bind}:{port}\n")
    sys.stderr.flush()
    server.serve_forever()


def main(argv: list[str]) -> None:
    root, bind, port, *pairs = argv
    nodes = dict(pair.split("=", 1) for pair in pairs)
    serve(Path(root), bind, int(port), nodes)


if __name__ == "__main__":
    main(sys.argv[1:])
