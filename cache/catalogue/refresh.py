"""Regenerate the package's copy of the API catalogue from the shared one.

`python -m cache.catalogue.refresh [SHARED_APIS_JSON]` (or `make catalogue`) copies the
shared `tushare/apis.json` (default: `../shared/tushare/apis.json` beside the repository)
byte for byte into `cache/catalogue/apis.json`, after checking that every entry builds;
the catalogue is never retyped by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cache.atomic import write_bytes_atomic
from cache.catalogue.apis import build_spec
from foundation.errors import UsageError

PACKAGE_COPY = Path(__file__).with_name("apis.json")
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_COPY = REPO_ROOT.parent / "shared" / "tushare" / "apis.json"


def refresh(source: Path = SHARED_COPY, target: Path = PACKAGE_COPY) -> int:
    """Copy `source` over `target` once every API in it builds; the number of APIs."""
    if not source.is_file():
        msg = f"no shared catalogue at {source}"
        raise UsageError(msg)
    data = source.read_bytes()
    try:
        apis = json.loads(data)["apis"]
        for name, raw in apis.items():
            build_spec(name, raw)
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"{source} is not a catalogue of APIs: {exc}"
        raise UsageError(msg) from None
    write_bytes_atomic(data, target)
    return len(apis)


def main(argv: list[str]) -> int:
    """Command line: an optional path to the shared apis.json."""
    try:
        count = refresh(Path(argv[0]) if argv else SHARED_COPY)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    print(f"{PACKAGE_COPY}: {count} APIs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
