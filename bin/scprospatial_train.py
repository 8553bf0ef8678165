#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial train` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
