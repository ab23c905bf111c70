"""Errors that rtdecode reports to its user.

Every error a user can cause (a bad config, a file in the wrong layout, a session of the wrong
kind) is a subclass of :class:`RtdecodeError`. The CLI prints these as one plain message and
exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RtdecodeError(Exception):
    """Base class for errors caused by input from outside (configs, files, streams)."""


class ConfigError(RtdecodeError):
    """A rig configuration that does not validate."""


class NWBLayoutError(RtdecodeError):
    """An NWB file that is not a usable Allen Visual Coding Neuropixels session."""


class RecordingError(RtdecodeError):
    """An Open Ephys recording that cannot be read or does not match expectations."""
