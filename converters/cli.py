"""`edgesr-convert`: train, distill, quantize/export, compile, evaluate."""
from __future__ import annotations

import json
import shlex
import sys

import click

from edgesr.cli import friendly


# TensorFlow and file problems during conversion are the user's to fix too: one line, exit code 2
_friendly = friendly(also=(ValueError, OSError))


@click.group()
def main() -> None:
    """Workstation tools: build SR models that the `edgesr` runtime ships."""


def _arch_options(fn):
    for opt in reversed([
        click.option("--arch", type=click.Choice(["srgan", "efdn", "espcn", "fsrcnn"]), default="srgan", show_default=True),
        click.option("--scale", type=click.IntRange(2, 4), default=4, show_default=True),
        click.option("--width", type=click.IntRange(1, 512), default=16, show_default=True, help="channels"),
        click.option("--blocks", type=click.IntRange(0, 64), default=1, show_default=True, help="residual/EDBB blocks"),
        click.option("--no-anchor", is_flag=True, help="no nearest-neighbour anchor in the tail"),
    ]):
        fn = opt(fn)
    return fn


def _train_options(fn):
    for opt in reversed([
        click.option("--data", "data", multiple=True, required=True, type=click.Path(), help="HR image folder (repeatable)"),
        click.option("--out", required=True, type=click.Path(), help="run folder (checkpoints, state.json)"),
        click.option("--val", type=click.Path(), default=None, help="validation folder, e.g. ../shared/data/val/Set5"),
        click.option("--steps", type=click.IntRange(1), default=20000, show_default=True),
        click.option("--batch", type=click.IntRange(1), default=16, show_default=True),
        click.option("--patch", type=click.IntRange(8), default=32, show_default=True, help="LR patch size"),
        click.option("--per-image", type=click.IntRange(1), default=16, show_default=True, help="cached patches per image"),
        click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True),
        click.option("--edge-weight", type=float, default=0.0, show_default=True, help="gradient-variance loss weight"),
        click.option("--val-every", type=click.IntRange(1), default=1000, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--threads", type=click.IntRange(0), default=0, help="TF threads (0: all)"),
        click.option("--resume", is_flag=True, help="continue from the run folder's last checkpoint"),
    ]):
        fn = opt(fn)
    return fn


def _run_train(arch, scale, width, blocks, no_anchor, data, out, val, steps, batch, patch, per_image,
               learning_rate, edge_weight, val_every, seed, threads, resume, **extra):
    from .archs import ArchSpec
    from .train import TrainConfig, train

    spec = ArchSpec(arch, scale, width, blocks, anchor=not no_anchor)
    cfg = TrainConfig(spec=spec, data=list(data), out=out, steps=steps, batch=batch, patch=patch,
                      per_image=per_image, lr=learning_rate, val=val, val_every=val_every, seed=seed,
                      edge_weight=edge_weight, threads=threads, command=shlex.join(["edgesr-convert", *sys.argv[1:]]),
                      teacher=extra.get("teacher"), distill_weight=extra.get("distill_weight", 1.0),
                      gan=extra.get("gan", False), adv_weight=extra.get("adv_weight", 5e-3),
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
@_friendly
def train_cmd(**kw):
    """Train an SR network on HR image folders (resumable with --resume)."""
    _run_train(**kw)


@main.command("distill")
@click.option("--teacher", required=True, type=click.Path(exists=True), help="teacher run folder")
@click.option("--distill-weight", type=float, default=1.0, show_default=True)
@_arch_options
@_train_options
@_friendly
def distill_cmd(**kw):
    """Train a small student from a larger teacher's outputs (L1 to HR + L1 to teacher)."""
    _run_train(**kw)


def _register_more() -> None:
    from . import cli_export  # noqa: F401  (quantize, compile, evaluate commands)


_register_more()
