"""The rule: edgesr never imports TensorFlow/Keras or converters (a Pi installs it without them)."""
import pkgutil
import subprocess
import sys

import edgesr


def test_edgesr_imports_without_tensorflow():
    mods = [m.name for m in pkgutil.walk_packages(edgesr.__path__, "edgesr.") if not m.name.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"mods = {mods!r}\n"
            "for m in mods: importlib.import_module(m)\n"
            "import edgesr.interpreter as e\n"
            "e.interpreter_api()\n"
            "bad = sorted(k for k in sys.modules\n"
            "             if k.split('.')[0] in ('tensorflow', 'keras', 'converters', 'tf_keras'))\n"
            "assert not bad, bad\n"
            "print(len(mods))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 8  # every module was imported, not an empty list
