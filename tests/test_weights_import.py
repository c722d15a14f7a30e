"""converters.torchfile + converters.weights_import: the EFDN authors' checkpoint read without PyTorch and
compared with their PyTorch model's output on a real image (third_party/efdn/efdn_reference.npz, made once with
torch 2.14 from their models/EFDN_deploy.py on a Set5 'woman' LR crop)."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from conftest import ROOT, run_cli

tf = pytest.importorskip("tensorflow", reason="converters need the [convert] extra")

from converters.torchfile import read_state_dict  # noqa: E402
from edgesr.errors import DataError  # noqa: E402

CKPT = ROOT / "third_party" / "efdn" / "EFDN_gv.pth"
REF = ROOT / "third_party" / "efdn" / "efdn_reference.npz"


def test_state_dict_read_without_torch():
    sd = read_state_dict(CKPT)
    assert sum(v.size for v in sd.values()) == 276192  # the paper's parameter count
    assert sd["head.weight"].shape == (48, 3, 3, 3) and sd["head.weight"].dtype == np.float32
    assert sd["tail.0.weight"].shape == (48, 48, 3, 3)


def _zip_with(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
    return buf.getvalue()


def test_checkpoint_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return os.system, ("touch " + str(tmp_path / "pwned"),)

    (tmp_path / "evil.pth").write_bytes(_zip_with(pickle.dumps({"w": Evil()})))
    with pytest.raises(DataError, match="posix.system|os.system|not a plain state dict"):
        read_state_dict(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a PyTorch zip checkpoint"):
        read_state_dict(tmp_path / "junk.pth")


@pytest.mark.slow
def test_import_matches_the_authors_pytorch_model(tmp_path):
    r = run_cli("converters", "import", CKPT, "--out", tmp_path / "run", "--reference", REF, timeout=600)
    assert r.returncode == 0, r.stderr
    import json
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["params"] == 276192
    assert info["max_abs_diff"] < 1e-5  # on [0, 1]: measured 8.3e-7
    assert (tmp_path / "run" / "best.weights.h5").exists()


def test_tail_order_matters():
    """The tail's PixelShuffle -> depth_to_space reordering is what makes the import right: without it the
    difference is large (so the reference comparison above can fail)."""
    from converters.archs import ArchSpec, build
    from converters.archs.efdn_ntire import load_torch_weights, shuffle_order

    spec = ArchSpec("efdn_ntire", 4, 48, 4, anchor=False)
    sd = read_state_dict(CKPT)
    model = build(spec)
    load_torch_weights(model, spec, sd)
    order = shuffle_order(4)
    assert sorted(order) == list(range(48)) and not np.array_equal(order, np.arange(48))
    with np.load(REF) as z:
        lr, ref = z["lr"], z["sr"]
    good = np.clip(np.asarray(model(lr[None] / np.float32(255))[0]), 0, 1)
    k, b = model.get_layer("tail").get_weights()
    inv = np.argsort(order)
    model.get_layer("tail").set_weights([k[..., inv], b[inv]])
    bad = np.clip(np.asarray(model(lr[None] / np.float32(255))[0]), 0, 1)
    assert np.abs(good - ref).max() < 1e-5 < 0.05 < np.abs(bad - ref).max()
