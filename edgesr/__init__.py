"""edgesr: real-time super-resolution on edge boards, streamed to robots. Never imports TensorFlow."""
from .errors import EdgeSRError

__version__ = "0.1.0"
__all__ = ["Engine", "EdgeSRError", "__version__"]


def __getattr__(name):  # lazy: `import edgesr` stays cheap
    if name == "Engine":
        from .engine import Engine
        return Engine
    raise AttributeError(name)
