"""Converters: architectures, re-parameterisation, export parity, Edge TPU report, CLI smoke runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DATA, FIX, ROOT, run_cli, slow_steps

tf = pytest.importorskip("tensorflow", reason="converters need the [convert] extra")
import keras  # noqa: E402

from converters.archs import ArchSpec, build  # noqa: E402
from converters.archs.common import copy_weights  # noqa: E402
from converters.quantize import convert, equalize_anchor  # noqa: E402


def rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("arch", ["srgan", "efdn", "espcn", "fsrcnn"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_archs_upscale_any_size(arch, scale):
    m = build(ArchSpec(arch, scale, width=8, blocks=1))
    assert m(rand((1, 13, 17, 3))).shape == (1, 13 * scale, 17 * scale, 3)


def test_efdn_reparameterize_identical():
    from converters.archs.efdn import efdn, reparameterize

    spec = ArchSpec("efdn", 2, width=8, blocks=3)
    train = efdn(spec, branchwise=True)
    for layer in train.layers:  # non-trivial scales/biases on every branch
        if layer.weights:
            layer.set_weights([w * 0.5 + rand(w.shape, 1) * 0.02 for w in layer.get_weights()])
    deploy = reparameterize(train, spec)
    x = rand((2, 19, 23, 3))
    ref = np.asarray(train(x))
    assert 0.5 < np.abs(ref).max() < 50  # a realistic output range, not a trivially small one
    assert np.abs(ref - np.asarray(deploy(x))).max() < 1e-4
    assert not any(type(layer).__name__ == "EDBB" for layer in deploy.layers)


def test_static_shuffle_equals_depth_to_space():
    spec = ArchSpec("srgan", 3, width=8, blocks=1)
    a = build(spec, input_shape=(12, 10, 3))
    b = build(spec, input_shape=(12, 10, 3), upsample="transpose_conv")
    copy_weights(a, b)
    x = rand((1, 12, 10, 3))
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-6)


def test_equalize_anchor_keeps_function_and_bounds_features():
    spec = ArchSpec("srgan", 2, width=8, blocks=2)
    m = build(spec)
    for layer in m.layers:
        if layer.weights:
            layer.set_weights([w * 3 for w in layer.get_weights()])
    x = [rand((1, 16, 16, 3), i) for i in range(4)]
    before = [np.asarray(m(v)) for v in x]
    a = equalize_anchor(m, spec, x)
    assert a != 1.0
    feats = keras.Model(m.input, m.get_layer("tail_anchor").input[0])
    assert max(float(np.max(feats(v))) for v in x) == pytest.approx(1.0, rel=1e-4)
    for v, ref in zip(x, before):
        np.testing.assert_allclose(np.asarray(m(v)), ref, rtol=1e-4, atol=1e-4)


def _run(blob, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    if i["dtype"] == np.uint8:
        s, z = i["quantization"]
        x = np.clip(np.round(x / s + z), 0, 255).astype(np.uint8)
    it.set_tensor(i["index"], x)
    it.invoke()
    y = it.get_tensor(o["index"])
    if o["dtype"] == np.uint8:
        s, z = o["quantization"]
        y = (y.astype(np.float32) - z) * s
    return y


@pytest.mark.slow
def test_export_parity_float_and_int8():
    spec = ArchSpec("srgan", 2, width=8, blocks=1)
    m = build(spec, input_shape=(24, 24, 3))
    x = rand((1, 24, 24, 3))
    ref = np.asarray(m(x))
    assert np.abs(_run(convert(m, "float32"), x) - ref).max() < 1e-4
    assert np.abs(_run(convert(m, "float16"), x) - ref).max() < 5e-3
    q = _run(convert(m, "int8", [rand((1, 24, 24, 3), i) for i in range(8)]), x)
    # int8 (post-training, untrained weights): close to float on every pixel, very close on average
    assert np.abs(q - ref).max() < 0.05 and np.abs(q - ref).mean() < 0.01


def test_edgetpu_report_flags_depth_to_space(tmp_path):
    from converters.edgetpu import compatibility_report, compile_model

    rep = compatibility_report(FIX / "tiny_x2_int8_tile.tflite")
    d2s = [o for o in rep["ops"] if o["op"] == "DEPTH_TO_SPACE"]
    assert d2s and not d2s[0]["maps"] and "not supported" in d2s[0]["why_not"] and not rep["fully_mapped"]
    ok = compatibility_report(FIX / "tiny_x2_int8_tile_edgetpu_ready.tflite")
    assert ok["fully_mapped"], [o for o in ok["ops"] if not o["maps"]]
    dyn = compatibility_report(FIX / "tiny_x2_float32.tflite")
    assert any("dynamic shape" in o["why_not"] for o in dyn["ops"])
    assert any("int8" in o["why_not"] for o in dyn["ops"])
    res = compile_model(FIX / "tiny_x2_int8_tile_edgetpu_ready.tflite", tmp_path)
    assert res["compiled"] is None  # no edgetpu_compiler here: report only, no fake compiled file
    assert json.loads((tmp_path / "tiny_x2_int8_tile_edgetpu_ready.edgetpu_report.json").read_text())["n_ops"] > 3
    assert not list(tmp_path.glob("*_edgetpu.tflite"))


def test_data_errors(tmp_path):
    from converters.data import list_images, make_patches
    from edgesr.errors import DataError

    with pytest.raises(DataError, match="not a folder"):
        list_images(tmp_path / "nope")
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        make_patches(tmp_path, 4, cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "broken.png").unlink()
    import cv2
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((50, 60, 3), np.uint8))
    with pytest.raises(DataError, match="small.png: 60x48 is smaller than one 128px HR crop"):
        make_patches(tmp_path, 4, patch=32, cache_dir=tmp_path / "c", progress=False)
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((130, 140, 3), np.uint8))  # small images are skipped
    lr, hr = make_patches(tmp_path, 4, patch=32, per_image=3, cache_dir=tmp_path / "c", progress=False)
    assert lr.shape == (3, 32, 32, 3) and hr.shape == (3, 128, 128, 3)


def _convert(*args, env=None):
    return run_cli("converters", *map(str, args), env=env, timeout=900)


@pytest.mark.slow
def test_cli_train_resume_distill_quantize_evaluate(tmp_path, set5):
    """Reduced end-to-end: train a few steps, resume, distil, GAN fine-tune, export int8, evaluate."""
    steps = slow_steps(6)
    env = {"EDGESR_CACHE": str(tmp_path / "cache")}
    data = tmp_path / "train"
    data.mkdir()
    for f in sorted((DATA / "train" / "BSDS400").glob("*.jpg"))[:6]:
        (data / f.name).write_bytes(f.read_bytes())
    common = ["--data", data, "--scale", "2", "--patch", "16", "--per-image", "4", "--batch", "4", "--val", set5,
              "--val-every", str(steps)]
    t = tmp_path / "teacher"
    r = _convert("train", "--arch", "srgan", "--width", "8", "--blocks", "2", "--steps", steps, "--out", t, *common,
                 env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["step"] == steps and out["steps_per_s"] > 0 and out["best_val_psnr"] > 20
    r = _convert("train", "--arch", "srgan", "--width", "8", "--blocks", "2", "--steps", 2 * steps, "--out", t,
                 "--resume", *common, env=env)
    assert r.returncode == 0, r.stderr
    state = json.loads((t / "state.json").read_text())
    assert state["step"] == 2 * steps and [h["step"] for h in state["history"]][-2:] == [steps, 2 * steps]
    r = _convert("train", "--arch", "efdn", "--width", "8", "--blocks", "2", "--steps", steps, "--out", t, "--resume",
                 *common, env=env)
    assert r.returncode == 2 and "same architecture" in r.stderr
    s = tmp_path / "student"
    r = _convert("distill", "--teacher", t, "--arch", "efdn", "--width", "4", "--blocks", "1", "--steps", steps,
                 "--edge-weight", "0.1", "--out", s, *common, env=env)
    assert r.returncode == 0, r.stderr
    g = tmp_path / "gan"
    r = _convert("train", "--gan", "--init", t / "best.weights.h5", "--arch", "srgan", "--width", "8", "--blocks",
                 "2", "--steps", steps, "--out", g, *common, env=env)
    assert r.returncode == 0, r.stderr
    assert (g / "disc.weights.h5").exists()
    f = tmp_path / "l2"  # the short L2 fine-tune after L1, from the L1 run's weights
    r = _convert("train", "--loss", "l2", "--lr-codec", "webp:30-90", "--init", t / "best.weights.h5", "--arch",
                 "srgan", "--width", "8", "--blocks", "2", "--steps", steps, "--out", f, *common, env=env)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((f / "state.json").read_text())["config"]
    assert cfg["loss"] == "l2" and cfg["lr_codec"] == "webp:30-90"
    models = tmp_path / "models"
    r = _convert("quantize", s, "--out", models, "--dtype", "float32", "--dtype", "int8", "--tile", "32x24",
                 "--data", data, "--eval", set5, env=env)
    assert r.returncode == 0, r.stderr
    card = json.loads((models / "efdn_w4b1_x2_int8_32x24.json").read_text())  # named by arch, width, blocks
    assert card["tile"] == [24, 32] and card["metrics"]["Set5"]["n"] == 5 and "int8_loss_db" in card["metrics"]["Set5"]
    r = _convert("evaluate", "--model", models / "efdn_w4b1_x2_int8_32x24.tflite", "--data", set5, "--json",
                 "--save-comparisons", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["n"] == 5 and ev["bicubic_psnr_y"] == pytest.approx(33.66, abs=0.05) and 0 < ev["ssim_y"] <= 1
    assert len(list((tmp_path / "cmp").glob("*.png"))) == 5
    r = _convert("quantize", s, "--out", models, "--dtype", "int8", "--tile", "32x24", "--edgetpu", "--data", data,
                 env=env)
    assert r.returncode == 0, r.stderr
    r = _convert("compile", models / "efdn_w4b1_x2_int8_32x24_edgetpu_ready.tflite")
    assert r.returncode == 0 and "edgetpu_compiler not found" in r.stderr and "24/24" not in r.stdout
    assert "ops would run on the Edge TPU (fully mapped)" in r.stdout


@pytest.mark.slow
def test_cli_bad_inputs(tmp_path):
    r = _convert("train", "--data", tmp_path, "--out", tmp_path / "o", "--steps", "1")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "no images" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _convert("quantize", tmp_path, "--out", tmp_path / "o", "--data", tmp_path)
    assert r.returncode == 2 and "not a training run folder" in r.stderr
    r = _convert("compile", tmp_path / "missing.tflite")
    assert r.returncode == 2 and "no such model file" in r.stderr
    r = _convert("evaluate", "--model", FIX / "tiny_x2_float32.tflite", "--data", tmp_path / "none")
    assert r.returncode == 2 and "not a folder" in r.stderr
    r = _convert("quantize", tmp_path, "--out", tmp_path / "o", "--data", tmp_path, "--tile", "axb")
    assert r.returncode == 2 and "expected WIDTHxHEIGHT" in r.stderr


@pytest.mark.parametrize("arch", ["srgan", "efdn"])
def test_split_anchor_export_form_is_the_same_function(arch):
    from converters.archs.efdn import reparameterize

    spec = ArchSpec(arch, 3, width=8, blocks=2)
    m = build(spec)
    for layer in m.layers:
        if layer.weights:
            layer.set_weights([w + rand(w.shape, 3) * 0.05 for w in layer.get_weights()])
    if arch == "efdn":
        split = reparameterize(m, spec, split_anchor=True)
    else:
        split = build(spec, split_anchor=True)
        copy_weights(m, split)
    assert "tail_nn_add" in [layer.name for layer in split.layers]
    k = split.get_layer("tail").get_weights()[0]
    assert np.abs(k[1, 1, -3:, :]).max() < 0.5  # the 1.0 anchor taps left the conv
    x = rand((1, 11, 14, 3))
    np.testing.assert_allclose(np.asarray(split(x)), np.asarray(m(x)), atol=1e-5)


@pytest.mark.slow
def test_distill_from_a_shipped_tflite_teacher_starting_from_the_recovered_default(tmp_path, set5):
    """A shipped int8 model teaches (its outputs cached with the patches), the student starts from the shipped
    default recovered into a trainable EDBB run (the same function as the folded .tflite)."""
    import os
    import subprocess
    import sys

    from converters.data import make_patches
    from converters.runs import load_run
    from edgesr.engine import Engine
    from edgesr.imageio import read_rgb

    models = ROOT / "edgesr" / "models"
    run = tmp_path / "default"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "recover_run.py"),
                        str(models / "efdn_w16b2_x4_float32.tflite"), str(models / "efdn_w16b2_x4_int8.json"),
                        str(run)],
                       capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stderr
    model, _ = load_run(run)
    lr = read_rgb(DATA / "val" / "Set5" / "bird.png")[:64, :64]
    keras_sr = np.clip(np.asarray(model(lr[None].astype(np.float32) / 255.0))[0] * 255 + 0.5, 0, 255)
    tflite_sr = Engine(str(models / "efdn_w16b2_x4_float32.tflite"), dtype="as-is").upscale(lr)  # not its twin
    assert np.abs(keras_sr.astype(int) - tflite_sr.astype(int)).max() <= 1  # every EDBB branch, same function
    data = tmp_path / "train"
    data.mkdir()
    for f in sorted((DATA / "train" / "BSDS400").glob("*.jpg"))[:3]:
        (data / f.name).write_bytes(f.read_bytes())
    teacher = models / "srgan_w32b3_x4_int8.tflite"
    lr_p, hr_p, t_p = make_patches(data, 4, patch=16, per_image=4, cache_dir=tmp_path / "c", progress=False,
                                   teacher=str(teacher))
    assert t_p.shape == hr_p.shape and len(lr_p) == 12
    assert np.abs(t_p.astype(int) - hr_p.astype(int)).mean() < np.abs(
        np.repeat(np.repeat(lr_p, 4, 1), 4, 2).astype(int) - hr_p.astype(int)).mean()  # closer to HR than NN
    s = tmp_path / "student"
    r = _convert("distill", "--teacher", teacher, "--init", run / "best.weights.h5", "--arch", "efdn", "--width", "16",
                 "--blocks", "2", "--scale", "4", "--steps", "4", "--patch", "16", "--per-image", "4", "--batch", "4",
                 "--data", data, "--out", s, env={"EDGESR_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    assert json.loads((s / "state.json").read_text())["config"]["teacher"].endswith("srgan_w32b3_x4_int8.tflite")


def test_lr_codec_h264_degrades_like_the_link(photo):
    """--lr-codec h264:LO-HI: LR patches as the robot decodes them from an H.264 stream (an intra picture at the
    QP); more QP, more loss; bad specs are one-line errors."""
    from converters.data import parse_lr_codec, through_codec
    from edgesr.errors import DataError
    from edgesr.metrics import psnr_y

    assert parse_lr_codec("h264:20-34") == ("h264", 20, 34)
    for bad in ("h264:20-60", "h265:20-30", "webp:0-50"):
        with pytest.raises(DataError, match="--lr-codec"):
            parse_lr_codec(bad)
    h, w = photo.shape[:2]
    p = np.ascontiguousarray(photo[h // 2:h // 2 + 48, w // 2:w // 2 + 48])
    fine, coarse = through_codec(p, "h264", 20), through_codec(p, "h264", 34)
    assert fine.shape == coarse.shape == p.shape
    assert psnr_y(fine, p, 0) > psnr_y(coarse, p, 0) + 3 > 30
