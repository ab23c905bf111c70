"""The live dashboard: a process of its own that reads the daemon's feeds and serves a page."""
