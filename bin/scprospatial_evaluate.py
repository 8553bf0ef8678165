#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial evaluate` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))
