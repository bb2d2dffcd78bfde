"""A fake OpenAI-compatible chat endpoint on 127.0.0.1 that records requests: for the tests of answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeChat:
    """``with FakeChat() as chat``: POST ``{chat.url}/chat/completions`` is recorded in ``chat.requests``
    (``path``, ``authorization``, ``body``) and answered with ``reply(body)`` (default: ``chat.answer``), or with
    an error when ``chat.status`` is not 200."""

    def __init__(self, answer: str = "OK", reply: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.answer = answer
        self.reply = reply or (lambda body: {"role": "assistant", "content": self.answer})
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeChat:
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                chat.requests.append(
                    {"path": self.path, "authorization": self.headers.get("Authorization"), "body": body}
                )
                payload: dict[str, Any] = {"error": {"message": "the fake model is down"}}
                if chat.status == 200:
                    payload = {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": chat.reply(body), "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                data = json.dumps(payload).encode()
                self.send_response(chat.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
