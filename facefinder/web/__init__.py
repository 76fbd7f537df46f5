"""The review page: a local web server and its static files (no build step)."""
