#!/usr/bin/env python3
"""Pipeline entry point: `scprospatial impute` (all logic lives in the installed package)."""
import sys

from scprospatial.cli import main

sys.exit(main(["impute", *sys.argv[1:]]))
