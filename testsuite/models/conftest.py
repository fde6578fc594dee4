"""Setup of the end-to-end model tests: Hugging Face stays offline (examples build locally)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
