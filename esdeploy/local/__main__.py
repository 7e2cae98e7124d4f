"""Local stack: `python -m esdeploy.local [--port 8000]` (the same as `esdeploy local`)."""
from __future__ import annotations

from esdeploy.local.run import main

if __name__ == "__main__":
    raise SystemExit(main())
