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


def listen_error(what: str, host: str, port: int, e: OSError) -> ConfigError:
    """The one-line error for an address that cannot be bound (port in use, or not this machine's)."""
    return ConfigError(f"{what}: cannot listen on {host}:{port} ({e.strerror or e}; port in use or address not on "
                       "this machine?)")


class ProtocolError(EdgeSRError):
    """Malformed packet on the wire."""
