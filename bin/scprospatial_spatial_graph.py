#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial spatial-graph` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["spatial-graph", *sys.argv[1:]]))
