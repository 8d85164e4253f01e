"""The measured stages, one module each, in pipeline order (listed in `bench.runner`).

Each stage module has `TITLE`, `NEEDS_DATA` (whether it reads the prepared cache) and
`run(ctx) -> StageResult`, which runs in the harness's process and hands every measured
operation to a fresh child process (`bench.child.in_child`). Product modules are
imported inside the child-side functions only, so a module that does not import (or a
stage whose code is missing) fails its own stage and not the others.
"""
