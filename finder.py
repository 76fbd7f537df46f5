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
    try:
        from facefinder.stick import keep_on_stick

        # Before anything else is imported: temp files and caches go to the stick, not
        # the host.
        keep_on_stick(Path(__file__).resolve().parent)
        from facefinder.cli import main
    except KeyboardInterrupt:  # Ctrl-C while the program starts: nothing was done yet
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    import os
    import signal

    # Once the run is over (its reports written), a Ctrl-C pressed once more while the
    # workers end and Python shuts down ends the program at once, with the exit status
    # the run earned (an uncaught KeyboardInterrupt would say "killed by a signal").
    try:
        code = main(started=started)
    except KeyboardInterrupt:
        code = 130
        print("Interrupted.", file=sys.stderr)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(code))
    sys.exit(code)
