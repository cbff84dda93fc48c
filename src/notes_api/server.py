"""How uvicorn serves the API. A module of its own, free of the app's imports, so that the
benchmark's bare baseline (bench/baseline_app.py) is served exactly the same way."""

from types import FrameType
from typing import Any

import uvicorn

SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,  # our middleware logs each request, with its request id
    "proxy_headers": True,
    "log_config": None,  # logging is configured by notes_api.core.logging
}


class Server(uvicorn.Server):
    """uvicorn, telling the app the moment a signal asks it to stop, before uvicorn drains
    the open requests: the app stops taking new jobs and answers its long polls at once,
    instead of only when the drain is over (see `main.lifespan`)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        state = getattr(self.config.app, "state", None)
        begin_shutdown = getattr(state, "begin_shutdown", None)
        if begin_shutdown is not None:
            begin_shutdown()
