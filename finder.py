#!/usr/bin/env python3
"""Find every photo that shows the people in reference/ — offline, from a USB stick.

Usage: python finder.py PHOTOS_DIR   (python finder.py --help for all options)
"""

import sys
import time
from pathlib import Path

if __name__ == "__main__":
    started = time.monotonic()  # the summary's wall clock includes start-up
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from facefinder.stick import keep_on_stick

    # Before anything else is imported: temp files and caches go to the stick, not the host.
    keep_on_stick(Path(__file__).resolve().parent)
    from facefinder.cli import main

    sys.exit(main(started=started))
