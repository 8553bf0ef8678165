#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial prepare` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["prepare", *sys.argv[1:]]))
