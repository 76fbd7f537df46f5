#!/usr/bin/env python3
"""Find every photo that shows the people in reference/ — offline, from a USB stick.

Usage: python finder.py PHOTOS_DIR   (python finder.py --help for all options)
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from facefinder.stick import keep_on_stick

    # Before anything else is imported: temp files and caches go to the stick, not the host.
    keep_on_stick(Path(__file__).resolve().parent)
    from facefinder.cli import main

    sys.exit(main())
