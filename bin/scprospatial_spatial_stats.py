#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial spatial-stats` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["spatial-stats", *sys.argv[1:]]))
