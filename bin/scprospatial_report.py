#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial report` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["report", *sys.argv[1:]]))
