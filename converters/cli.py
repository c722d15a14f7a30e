"""`edgesr-convert`: train, distill, quantize/export, compile, evaluate."""
from __future__ import annotations

import json
import shlex
import sys

import click

from edgesr.cli import SCALE, friendly, size_wxh
from edgesr.interpreter import BACKENDS


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="keep TensorFlow's and the interpreter's own log lines")
def main(verbose) -> None:
    """Workstation tools: build SR models that the `edgesr` runtime ships."""
    from edgesr import interpreter

    interpreter.VERBOSE = verbose


def _arch_options(fn):
    for opt in reversed([
        click.option("--arch", type=click.Choice(["srgan", "efdn", "espcn", "fsrcnn"]), default="srgan",
                     show_default=True),
        click.option("--scale", type=SCALE, default=4, show_default=True),
        click.option("--width", type=click.IntRange(1, 512), default=16, show_default=True, help="channels"),
        click.option("--blocks", type=click.IntRange(0, 64), default=1, show_default=True, help="residual/EDBB blocks"),
        click.option("--no-anchor", is_flag=True, help="no nearest-neighbour anchor in the tail"),
        click.option("--color", type=click.Choice(["rgb", "y"]), default="rgb", show_default=True,
                     help="y: the network super-resolves luminance only; the runtime resizes chroma"),
    ]):
        fn = opt(fn)
    return fn


def _train_options(fn):
    for opt in reversed([
        click.option("--data", "data", multiple=True, required=True, type=click.Path(),
                     help="HR image folder (repeatable)"),
        click.option("--out", required=True, type=click.Path(), help="run folder (checkpoints, state.json)"),
        click.option("--val", type=click.Path(), default=None, help="validation folder, e.g. ../shared/data/val/Set5"),
        click.option("--steps", type=click.IntRange(1), default=20000, show_default=True),
        click.option("--batch", type=click.IntRange(1), default=16, show_default=True),
        click.option("--patch", type=click.IntRange(8), default=32, show_default=True, help="LR patch size"),
        click.option("--per-image", type=click.IntRange(1), default=16, show_default=True,
                     help="cached patches per image"),
        click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True),
        click.option("--edge-weight", type=float, default=0.0, show_default=True, help="gradient-variance loss weight"),
        click.option("--val-every", type=click.IntRange(1), default=1000, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--threads", type=click.IntRange(0), default=0, help="TF threads (0: all)"),
        click.option("--resume", is_flag=True, help="continue from the run folder's last checkpoint"),
    ]):
        fn = opt(fn)
    return fn


def _run_train(arch, scale, width, blocks, no_anchor, color, data, out, val, steps, batch, patch, per_image,
               learning_rate, edge_weight, val_every, seed, threads, resume, **extra):
    from edgesr import interpreter

    from .archs import ArchSpec
    from .tf import import_tf
    from .train import TrainConfig, train

    import_tf(interpreter.VERBOSE)

    spec = ArchSpec(arch, scale, width, blocks, anchor=not no_anchor, channels=1 if color == "y" else 3)
    cfg = TrainConfig(spec=spec, data=list(data), out=out, steps=steps, batch=batch, patch=patch,
                      per_image=per_image, lr=learning_rate, val=val, val_every=val_every, seed=seed,
                      edge_weight=edge_weight, threads=threads, command=shlex.join(["edgesr-convert", *sys.argv[1:]]),
                      teacher=extra.get("teacher"), distill_weight=extra.get("distill_weight", 1.0),
                      gan=extra.get("gan", False), adv_weight=extra.get("adv_weight", 5e-3),
                      loss=extra.get("loss", "l1"), lr_codec=extra.get("lr_codec"),
                      extra={"init": extra["init"]} if extra.get("init") else {})
    state = train(cfg, resume=resume)
    last = state["history"][-1] if state["history"] else {}
    click.echo(json.dumps({"out": out, "step": state["step"], "best_val_psnr": state["best_psnr"],
                           "steps_per_s": last.get("steps_per_s")}))


@main.command("train")
@_arch_options
@_train_options
@click.option("--gan", is_flag=True, help="GAN fine-tune stage (adds a patch discriminator)")
@click.option("--adv-weight", type=float, default=5e-3, show_default=True)
@click.option("--init", type=click.Path(exists=True), default=None, help="weights to start from (.weights.h5)")
@click.option("--loss", type=click.Choice(["l1", "l2"]), default="l1", show_default=True,
              help="pixel loss (l2: the short fine-tune after l1)")
@click.option("--lr-codec", default=None, help="train on LR patches through a lossy codec, e.g. webp:30-90")
@friendly
def train_cmd(**kw):
    """Train an SR network on HR image folders (resumable with --resume)."""
    _run_train(**kw)


@main.command("distill")
@click.option("--teacher", required=True, type=click.Path(exists=True),
              help="teacher run folder, or a .tflite model (run once per training image; outputs cached)")
@click.option("--init", type=click.Path(exists=True), default=None, help="student weights to start from (.weights.h5)")
@click.option("--distill-weight", type=float, default=1.0, show_default=True)
@_arch_options
@_train_options
@friendly
def distill_cmd(**kw):
    """Train a small student from a larger teacher's outputs (L1 to HR + L1 to teacher)."""
    _run_train(**kw)


def _tile(value: str):
    """--tile WxH (like every size on the command line) -> (h, w), or None for 'dynamic'."""
    if value in (None, "dynamic"):
        return None
    w, h = size_wxh(value)
    return h, w


@main.command("quantize")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(["float32", "float16", "int8"]),
              default=["int8"], show_default=True, help="repeatable")
@click.option("--tile", default="dynamic", show_default=True,
              help="fixed LR input WIDTHxHEIGHT (e.g. 80x60), or 'dynamic'")
@click.option("--edgetpu", is_flag=True, help="Edge TPU variant: transpose-conv shuffle instead of DEPTH_TO_SPACE")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True, help="tiles per invoke")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(),
              help="training folder(s) for calibration")
@click.option("--eval", "eval_dirs", multiple=True, type=click.Path(exists=True),
              help="measure PSNR/SSIM on these folders and write them into the card (repeatable)")
@click.option("--name", default=None, help="model name (default from arch/dtype/tile)")
@friendly
def quantize_cmd(run, out, dtypes, tile, edgetpu, batch, data, eval_dirs, name):
    """Export a trained RUN to TFLite (+ model card); int8 is full-integer with uint8 IO."""
    from edgesr import interpreter
    from edgesr.modelcard import load_card

    from .evaluate import evaluate_model
    from .quantize import export
    from .tf import import_tf

    import_tf(interpreter.VERBOSE)

    tile_hw = _tile(tile)
    float_ref, made = {}, {}
    for dtype in dtypes:
        path = export(run, out, dtype, tile_hw, list(data), edgetpu=edgetpu,
                      name=f"{name}_{dtype}" if name and len(dtypes) > 1 else name, batch=batch)
        card = load_card(path)
        for d in eval_dirs:
            r = evaluate_model(path, d, progress=True)
            key = d.rstrip("/").split("/")[-1]
            card.metrics[key] = {k: r[k] for k in ("psnr_y", "ssim_y", "bicubic_psnr_y", "n")}
            if dtype == "float32":
                float_ref[key] = r["psnr_y"]
            elif key in float_ref:
                card.metrics[key]["float32_psnr_y"] = float_ref[key]
                loss_key = "int8_loss_db" if dtype == "int8" else "loss_db"
                card.metrics[key][loss_key] = round(float_ref[key] - r["psnr_y"], 4)
        card.save(path.with_suffix(".json"))
        made[dtype] = path
        click.echo(json.dumps({"model": str(path), "dtype": dtype, "metrics": card.metrics}))
    if "int8" in made and "float32" in made and not edgetpu:  # exact twins: same weights (edgesr.twins)
        for a, b in (("int8", "float32"), ("float32", "int8")):
            card = load_card(made[a])
            card.twin = made[b].name
            card.save(made[a].with_suffix(".json"))


@main.command("import")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run folder to create")
@click.option("--scale", type=SCALE, default=4, show_default=True)
@click.option("--width", type=click.IntRange(4, 512), default=48, show_default=True, help="features (authors': 48)")
@click.option("--blocks", type=click.IntRange(2, 4), default=4, show_default=True, help="cells (authors': 4)")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False), default=None,
              help=".npz with 'lr' (uint8 HxWx3) and 'sr' (the PyTorch model's float output): "
                   "report the max difference")
@friendly
def import_cmd(checkpoint, out, scale, width, blocks, reference):
    """Import the EFDN authors' trained PyTorch weights (EFDN_gv.pth) into a run folder, without PyTorch.

    The run then goes through `quantize` (int8, float32) and `evaluate` like a trained one."""
    from edgesr import interpreter

    from .tf import import_tf
    from .weights_import import import_efdn

    import_tf(interpreter.VERBOSE)
    click.echo(json.dumps(import_efdn(checkpoint, out, scale, width, blocks, reference)))


@main.command("compile")
@click.argument("model", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None, help="output folder (default: beside MODEL)")
@friendly
def compile_cmd(model, out):
    """Compile an int8 tile model for the Edge TPU; always writes a per-op compatibility report."""
    from .edgetpu import compile_model

    res = compile_model(model, out)
    click.echo(res["summary"])
    if res["compiled"]:
        click.echo(f"compiled with edgetpu_compiler {res['compiler']}: {res['compiled']}")
    elif res["compiler"]:
        click.echo(f"edgetpu_compiler {res['compiler']} failed; see the log in {res['report']}", err=True)
        raise SystemExit(1)
    else:
        click.echo("edgetpu_compiler not found on PATH: no compiled model written, only the report "
                   f"{res['report']}", err=True)


@main.command("evaluate")
@click.option("--model", default=None, help="model name or .tflite path (default: shipped default of --scale)")
@click.option("--data", required=True, type=click.Path(), help="folder of HR images, e.g. ../shared/data/val/Set5")
@click.option("--scale", type=SCALE, default=None, help="needed for the default model or card-less models")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--save-comparisons", type=click.Path(file_okay=False), default=None,
              help="write bicubic | model | HR crops as PNGs here")
@friendly
def evaluate_cmd(model, data, scale, backend, as_json, save_comparisons):
    """Y-channel PSNR/SSIM through the edgesr runtime, with MATLAB bicubic in the same run."""
    from edgesr.modelcard import resolve_model

    from .evaluate import evaluate_model

    path = resolve_model(model, scale or 4)
    r = evaluate_model(path, data, scale=scale, backend=backend, save_dir=save_comparisons, progress=not as_json)
    if as_json:
        click.echo(json.dumps(r))
        return
    for row in r["per_image"]:
        click.echo(f"{row['image']:<16} {row['psnr_y']:7.3f} dB  SSIM {row['ssim_y']:.4f}   "
                   f"bicubic {row['bicubic_psnr_y']:7.3f} dB")
    click.echo(f"{r['model']} x{r['scale']} on {r['data']} (n={r['n']}, {r['backend']}): "
               f"PSNR-Y {r['psnr_y']:.3f} dB SSIM {r['ssim_y']:.4f} | bicubic {r['bicubic_psnr_y']:.3f} dB "
               f"SSIM {r['bicubic_ssim_y']:.4f}")
