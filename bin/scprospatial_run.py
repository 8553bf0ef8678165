#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial run` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["run", *sys.argv[1:]]))
