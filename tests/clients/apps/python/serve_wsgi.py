"""Runs in the fresh virtualenv: executes a Python file (the README's snippet, with the test's
verifier address and CA), serves the WSGI ``app`` it defines on 127.0.0.1 with wsgiref, prints
``listening on PORT`` and serves until stdin closes."""

import runpy
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


app = runpy.run_path(sys.argv[1])["app"]
server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"listening on {server.server_port}", flush=True)
sys.stdin.read()
server.shutdown()
