"""Shared by the benchmark scripts: the result as JSON on stdout, and in ``--out`` if given."""

from __future__ import annotations

import json


def emit(result: dict, out: str | None) -> dict:
    """Print ``result`` as JSON, write it to ``out`` when given, and return it."""
    print(json.dumps(result, indent=1))
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return result
