"""How uvicorn serves the API. A module of its own, free of heavy imports, so that the
benchmark's bare baseline (bench/baseline_app.py) is served exactly the same way."""

from typing import Any

SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,  # our middleware logs each request, with its request id
    "proxy_headers": True,
    "log_config": None,  # logging is configured by notes_api.core.logging
}
