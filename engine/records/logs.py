"""Operator logging: the one place that configures ``logging``."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Log lines to stderr: time, level, logger, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
