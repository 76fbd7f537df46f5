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
        from facefinder.stick import keep_on_stick, remove_run_folder

        # Before anything else is imported: temp files and caches go to the stick, not
        # the host.
        keep_on_stick(Path(__file__).resolve().parent)
        from facefinder.cli import main
    except KeyboardInterrupt:  # Ctrl-C while the program starts: nothing was done yet
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    import contextlib
    import os
    import signal

    done: list[int] = []  # the run's exit status, once it is over

    def on_ctrl_c(signum: int, frame: object) -> None:
        """Ctrl-C stops the run (KeyboardInterrupt, which the finder turns into a partial
        report); once the run is over (its reports written), a Ctrl-C pressed while the
        workers end and Python shuts down ends the program at once, with the status the
        run earned (an uncaught KeyboardInterrupt would say "killed by a signal")."""
        if done:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # (mid-print: what is lost is lost)
                    stream.flush()
            with contextlib.suppress(Exception):
                remove_run_folder()  # what atexit would have done
            os._exit(done[0])
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not if ignored
        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        done.append(main(started=started))
    except KeyboardInterrupt:
        done.append(130)
        print("Interrupted.", file=sys.stderr)
    sys.exit(done[0])
