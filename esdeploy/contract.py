"""Tool: writes docs/openapi.json, the API's committed contract, from the app (`make openapi`).

`python -m esdeploy.contract` writes it; `--check` exits 1 when the committed file differs from what
the routes and the models generate now (tests/app/test_openapi.py runs the same comparison).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    """The document as committed: indented, keys in generation order, one newline at the end."""
    import app
    from chalicelib.api.openapi import build_document

    return json.dumps(build_document(app.route_keys()), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--path", type=Path, default=DOCUMENT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.is_file() or args.path.read_text(encoding="utf-8") != text:
            print(f"{args.path} is not what the routes generate: run `make openapi` and commit it", file=sys.stderr)
            return 1
        print(f"{args.path} matches the routes")
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
