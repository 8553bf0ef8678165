#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial map` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["map", *sys.argv[1:]]))
