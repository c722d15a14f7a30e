"""Errors a user can act on. The CLIs turn each into one line on stderr and exit code 2."""


class EdgeSRError(Exception):
    """Base class: the message names the file, key or device and what to do."""


class ModelError(EdgeSRError):
    """Missing, corrupt or unsupported model file or model card."""


class BackendError(EdgeSRError):
    """No interpreter or delegate (Edge TPU) available for the requested backend."""


class InputError(EdgeSRError):
    """Unreadable image/video, wrong shape, unwritable output."""


class DataError(EdgeSRError):
    """Training/evaluation data folder problems (empty, unreadable, too small)."""


class ConfigError(EdgeSRError):
    """Bad configuration key or value."""


class ProtocolError(EdgeSRError):
    """Malformed packet on the wire."""
