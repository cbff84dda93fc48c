"""Write the service's OpenAPI document (what `GET /openapi.json` serves) to a file, without
a server or a database: the client's types are generated from it."""

from __future__ import annotations

import json
import os
import sys

from notes_api.core.config import Settings
from notes_api.main import create_app


def main(path: str) -> None:
    # The document must not depend on who runs this: no .env, no settings from the shell.
    fields = set(Settings.model_fields)
    for name in [n for n in os.environ if n.lower() in fields]:
        del os.environ[name]
    settings = Settings(_env_file=None, database_url="sqlite://", app_env="test", log_level="ERROR")  # type: ignore[call-arg]
    document = create_app(settings).openapi()
    with open(path, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
