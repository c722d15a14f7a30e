"""TensorFlow for the workstation commands, imported once and quietly: TF 2.21 prints absl/oneDNN start-up lines
on stderr that no log level silences, which would break the one-line error contract (`edgesr-convert -v` keeps
them)."""
from __future__ import annotations

import os


def import_tf(verbose: bool = False):
    """``tensorflow`` (and keras loaded with it); a missing install is a one-line error naming the extra."""
    from edgesr.errors import BackendError
    from edgesr.interpreter import quiet_native_stderr

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        if verbose:
            import keras  # noqa: F401
            import tensorflow as tf
        else:
            with quiet_native_stderr(force=True):
                import keras  # noqa: F401
                import tensorflow as tf
    except ImportError:
        raise BackendError('TensorFlow is not installed: pip install "edgesr[convert]"') from None
    return tf
