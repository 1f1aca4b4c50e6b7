"""What every research command does with its result: print the table, write the JSON and the README's
markdown where asked (the README and docs tables are generated from that JSON, never typed)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def write_outputs(doc: dict, table: str, markdown: Callable[[dict], str], *, json_path: str | None = None,
                  markdown_path: str | None = None) -> None:
    """Print ``table``; write ``doc`` as JSON to ``json_path`` and ``markdown(doc)`` to ``markdown_path`` when
    given, saying each file written."""
    print(table)
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2))
        print(f"wrote {json_path}")
    if markdown_path:
        Path(markdown_path).write_text(markdown(doc))
        print(f"wrote {markdown_path}")
