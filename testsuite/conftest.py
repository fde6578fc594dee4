"""Every test compile verifies the module after each pass (`RDU_VERIFY_EACH_PASS=1`), so a
pass that leaves invalid IR fails its tests at that pass; users' compiles verify once at
the end and re-run per pass only when something fails (`pipeline.run_pipeline`)."""

from __future__ import annotations

import os

os.environ.setdefault("RDU_VERIFY_EACH_PASS", "1")
