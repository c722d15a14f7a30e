"""Hardware apart from per-frame work: which TFLite interpreter is installed, the Edge TPU delegate and what
is missing for it, and the one way to open a ``.tflite`` file (CPU/XNNPACK or Edge TPU).

Interpreter: ai_edge_litert, else tflite_runtime, else tensorflow.lite (found at run time, reported).
The Edge TPU goes through ``load_delegate('libedgetpu.so.1')``; Google's pycoral is used only when it is
really installed (the PyPI package named ``pycoral`` is unrelated and has no ``make_interpreter``).
"""
from __future__ import annotations

import contextlib
import ctypes.util
import functools
import gc
import os
import sys
from pathlib import Path

from .errors import BackendError, ModelError

BACKENDS = ("auto", "cpu", "edgetpu")
EDGETPU_LIB = {"linux": "libedgetpu.so.1", "darwin": "libedgetpu.1.dylib", "win32": "edgetpu.dll"}
USB_RULES = "firmware-configs/coral-usb/99-edgetpu-accelerator.rules"
VERBOSE = False  # `edgesr -v`: let the interpreter's own INFO lines through


@functools.lru_cache(maxsize=1)
def interpreter_api():
    """(name, Interpreter class, load_delegate) of the first TFLite interpreter package installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
        return "ai-edge-litert", Interpreter, load_delegate
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate
        return "tflite-runtime", Interpreter, load_delegate
    except ImportError:
        pass
    try:
        import tensorflow as tf  # heavy; only when nothing lighter is installed
        return "tensorflow.lite", tf.lite.Interpreter, tf.lite.experimental.load_delegate
    except ImportError:
        raise BackendError("no TFLite interpreter: pip install ai-edge-litert (or tflite-runtime)") from None


def is_edgetpu_model(path) -> bool:
    """An Edge TPU-compiled model carries the custom op name in its flatbuffer."""
    try:
        return b"edgetpu-custom-op" in Path(path).read_bytes()
    except OSError:
        return False


def edgetpu_hint() -> str:
    """What is missing for the Edge TPU, in words a user can act on."""
    missing = []
    if not ctypes.util.find_library("edgetpu"):
        missing.append("libedgetpu (apt install libedgetpu1-std from Coral's repository)")
    has_pcie = any(Path("/dev").glob("apex_*"))
    has_usb = False
    for d in Path("/sys/bus/usb/devices").glob("*/idVendor"):
        try:
            has_usb |= d.read_text().strip() in ("1a6e", "18d1")
        except OSError:
            pass
    if not (has_pcie or has_usb):
        missing.append("an Edge TPU device (/dev/apex_0 for PCIe/M.2, or the Coral USB 1a6e:089a / 18d1:9302)")
    if has_usb and not missing:
        missing.append(f"permission to the USB device (install {USB_RULES})")
    return "; ".join(missing) or "the Edge TPU delegate failed to load"


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def quiet_native_stderr(force: bool = False):
    """Silence C-level stderr (the interpreter's 'INFO: Created TensorFlow Lite XNNPACK delegate' line) for the
    duration, so that a command's error stays one line; `edgesr -v` keeps it (unless ``force``)."""
    if VERBOSE and not force:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _edgetpu_delegate(load_delegate):
    lib = EDGETPU_LIB.get(sys.platform, "libedgetpu.so.1")
    hook = sys.unraisablehook
    # ai-edge-litert's Delegate.__del__ raises AttributeError after a failed load; keep that noise off stderr
    sys.unraisablehook = lambda u: None if "Delegate.__del__" in repr(u.object) else hook(u)
    error = delegate = None
    try:
        try:
            delegate = load_delegate(lib)
        except (ValueError, OSError, RuntimeError) as e:
            error = first_line(e)
        gc.collect()  # the half-built Delegate dies here, once the exception is gone
    finally:
        sys.unraisablehook = hook
    if error is not None:
        raise BackendError(f"Edge TPU unavailable: {edgetpu_hint()} ({error})")
    return delegate


def _pycoral_interpreter(path: str):
    """Google's pycoral ``make_interpreter`` when it is really installed, else None."""
    try:
        from pycoral.utils.edgetpu import make_interpreter
    except ImportError:  # not installed, or the unrelated PyPI package of that name
        return None
    try:
        return make_interpreter(path)
    except (ValueError, RuntimeError, OSError) as e:
        raise BackendError(f"Edge TPU unavailable: {edgetpu_hint()} ({first_line(e)})") from None


def open_interpreter(path, threads: int | None = None, edgetpu: bool = False, allocate: bool = True):
    """The interpreter for a ``.tflite`` file: CPU/XNNPACK with ``threads``, or on the Edge TPU. A missing or
    corrupt file raises ModelError, a missing accelerator BackendError (naming what is missing)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    _, Interpreter, load_delegate = interpreter_api()
    if edgetpu:
        it = _pycoral_interpreter(str(path))
        if it is None:
            it = Interpreter(model_path=str(path), experimental_delegates=[_edgetpu_delegate(load_delegate)])
    else:
        try:
            it = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{path}: not a valid TFLite model ({first_line(e)})") from None
    if allocate:
        for d in it.get_input_details():  # a dynamic input defaults to 1x1, which strided/pooled nets cannot run
            sig = list(d.get("shape_signature", d["shape"]))
            if len(sig) == 4 and min(sig[1:3]) < 0:
                it.resize_tensor_input(d["index"], [1, 32, 32, max(sig[3], 1)], strict=False)
        allocate_quietly(it, path)
    return it


def allocate_quietly(it, path) -> None:
    """``allocate_tensors`` without the interpreter's INFO line; a model that cannot run is a ModelError."""
    try:
        with quiet_native_stderr():
            it.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not a valid TFLite model ({first_line(e)})") from None
