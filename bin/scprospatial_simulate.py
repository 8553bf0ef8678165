#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial simulate` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["simulate", *sys.argv[1:]]))
