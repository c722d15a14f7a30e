"""`edgesr-convert quantize | compile | evaluate`."""
from __future__ import annotations

import json

import click

from .cli import _friendly, main


def _tile(value: str):
    if value in (None, "dynamic"):
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
        assert h > 0 and w > 0
        return h, w
    except (ValueError, AssertionError):
        raise click.BadParameter(f"{value!r}: expected HxW (e.g. 60x80) or 'dynamic'") from None


@main.command("quantize")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(["float32", "float16", "int8"]),
              default=["int8"], show_default=True, help="repeatable")
@click.option("--tile", default="dynamic", show_default=True, help="fixed LR input HxW, or 'dynamic'")
@click.option("--edgetpu", is_flag=True, help="Edge TPU variant: transpose-conv shuffle instead of DEPTH_TO_SPACE")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True, help="tiles per invoke")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(), help="training folder(s) for calibration")
@click.option("--eval", "eval_dirs", multiple=True, type=click.Path(exists=True),
              help="measure PSNR/SSIM on these folders and write them into the card (repeatable)")
@click.option("--name", default=None, help="model name (default from arch/dtype/tile)")
@_friendly
def quantize_cmd(run, out, dtypes, tile, edgetpu, batch, data, eval_dirs, name):
    """Export a trained RUN to TFLite (+ model card); int8 is full-integer with uint8 IO."""
    from .evaluate import evaluate_model
    from .quantize import export
    from edgesr.modelcard import load_card

    tile_hw = _tile(tile)
    float_ref = {}
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
                card.metrics[key]["int8_loss_db" if dtype == "int8" else "loss_db"] = round(float_ref[key] - r["psnr_y"], 4)
        card.save(path.with_suffix(".json"))
        click.echo(json.dumps({"model": str(path), "dtype": dtype, "metrics": card.metrics}))


@main.command("compile")
@click.argument("model", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None, help="output folder (default: beside MODEL)")
@_friendly
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
@click.option("--scale", type=click.IntRange(2, 4), default=None, help="needed for the default model or card-less models")
@click.option("--backend", type=click.Choice(["auto", "cpu", "edgetpu"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--save-comparisons", type=click.Path(file_okay=False), default=None,
              help="write bicubic | model | HR crops as PNGs here")
@_friendly
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
