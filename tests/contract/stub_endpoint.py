"""Contract stand-in: the serving process LocalHosting starts, without a model.

It prints the start-up lines the real one prints (the words of esdeploy.local.endpoint's LISTENING and READY, handed
in by its harness) and answers POST /invocations with the answer its harness primed (`answer.json` in the variant's
folder, beside its working folder). The hosting contract is about the variant's life (creation, states, deletes,
processes started and stopped), not the model; tests/serving/test_local_hosting.py and the e2e tests run the real
serving process.

Standard library only, so that it starts as `python -I -S stub_endpoint.py ...` in a few tens of milliseconds (the
real one's imports cost ~0.2 s a case). It ends on SIGTERM (LocalHosting's stop) or with its parent.
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PRIMED = "answer.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--listening", required=True, help="the real endpoint's LISTENING words")
    parser.add_argument("--ready", required=True, help="the real endpoint's READY words")
    options = parser.parse_args()
    primed = options.workdir.parent / PRIMED

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            found = primed.is_file()
            body = primed.read_bytes() if found else b'{"detail": "no answer primed"}'
            self.send_response(200 if found else 500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=_end_with_parent, args=(options.parent_pid,), daemon=True).start()
    port = server.server_address[1]
    print(f"{options.listening} http://127.0.0.1:{port} (workdir {options.workdir})", flush=True)
    print(f"{options.ready} stub on port {port}", flush=True)
    server.serve_forever()


def _end_with_parent(parent_pid: int) -> None:
    """A harness killed before its cleanup leaves no stub behind."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    main()
