#!/usr/bin/env python3
"""The sandbox's stand-in for Jupyter's `start-notebook.py` (sandbox/images.sh puts it into the stand-in of
the catalog's Jupyter image): the catalog records that command for the real image, and the stand-in must run
it too. It serves one page on --ServerApp.ip / --ServerApp.port (default 0.0.0.0:8888), as the notebook server
would, so a user reaches it through `ssh -L 8888:localhost:8888`."""

import http.server
import sys


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the standard library names it
        body = b"gpucloud sandbox: stand-in for the Jupyter notebook server\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str]) -> int:
    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    ip = options.get("ServerApp.ip", "0.0.0.0")  # noqa: S104 (what Jupyter's image binds)
    port = int(options.get("ServerApp.port", "8888"))
    server = http.server.HTTPServer((ip, port), Page)
    print(f"notebook stand-in serving on http://{ip}:{port}/", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
