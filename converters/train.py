"""Resumable training: L1 (+ edge loss) pre-training, optional GAN fine-tune, optional teacher distillation.
The run folder's layout is in ``converters.runs``."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgesr.errors import DataError
from edgesr.metrics import psnr_y

from .archs import ArchSpec, build
from .runs import load_run, read_spec, read_state, write_state


@dataclass
class TrainConfig:
    spec: ArchSpec
    data: list[str]
    out: str
    steps: int = 20000
    batch: int = 16
    patch: int = 32
    per_image: int = 16
    lr: float = 1e-3
    val: str | None = None
    val_every: int = 1000
    ckpt_every: int = 250
    seed: int = 0
    edge_weight: float = 0.0
    teacher: str | None = None
    distill_weight: float = 1.0
    gan: bool = False
    adv_weight: float = 5e-3
    threads: int = 0
    loss: str = "l1"                # "l1", or "l2" for the short fine-tune after it
    lr_codec: str | None = None     # e.g. "webp:30-90": train on LR that went through the link's codec
    command: str = ""
    extra: dict = field(default_factory=dict)


def validate(model, pairs, scale: int) -> float:
    """Mean Y-PSNR of a float Keras model over (name, LR, HR) pairs (whole images, dynamic shape); a Y model
    (one input channel) gets its chroma the way the runtime gives it (``edgesr.color``)."""
    from edgesr.color import luma, with_chroma

    y_model = model.input.shape[-1] == 1
    scores = []
    for _, lr, hr in pairs:
        sr = np.asarray(model((luma(lr) if y_model else lr)[None].astype(np.float32) / 255.0, training=False))[0]
        sr = np.clip(sr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        scores.append(psnr_y(with_chroma(sr, lr) if y_model else sr, hr, scale))
    return float(np.mean(scores))


def _save_opt(opt, path: Path) -> None:
    np.savez(path, *[np.asarray(v) for v in opt.variables])


def _load_opt(opt, variables, path: Path) -> None:
    opt.build(variables)
    with np.load(path) as z:
        values = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(values) != len(opt.variables):
        raise DataError(f"{path}: optimizer state does not match this model")
    for v, val in zip(opt.variables, values):
        v.assign(val)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or continue) a run; returns the final state dict."""
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from . import losses
    from .archs.srgan import discriminator
    from .data import dataset, load_pairs, make_patches

    if cfg.threads:
        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = cfg.spec
    state = {"step": 0, "best_psnr": None, "history": [], "config": asdict(cfg)}
    if resume and (out / "state.json").exists():
        state = read_state(out)
        saved = read_spec(out)
        if saved != spec:
            raise DataError(f"{out}: holds a {saved.arch} w{saved.width} b{saved.blocks} x{saved.scale} run; "
                            "--resume needs the same architecture")
        state["config"] = asdict(cfg)
    (out / "spec.json").write_text(json.dumps(spec.to_dict(), indent=1))

    # a .tflite teacher (e.g. a shipped int8 model) is run once per training image by the edgesr runtime: its
    # outputs are cached beside the patches; a run-folder teacher runs inside the training step
    tflite_teacher = cfg.teacher if cfg.teacher and cfg.teacher.endswith(".tflite") else None
    arrays = make_patches(cfg.data, spec.scale, cfg.patch, cfg.per_image, cfg.seed, progress=progress,
                          lr_codec=cfg.lr_codec, teacher=tflite_teacher)
    if spec.channels == 1:  # a Y model learns Y from Y (the teacher's RGB output too)
        from edgesr.color import luma

        arrays = tuple(luma(a) for a in arrays)
    ds = iter(dataset(*arrays, batch=cfg.batch, seed=cfg.seed + state["step"]))
    pairs = load_pairs(cfg.val, spec.scale) if cfg.val else []

    model = build(spec)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, max(cfg.steps, 1), alpha=0.02)
    opt = keras.optimizers.Adam(schedule)
    teacher = None
    if cfg.teacher and not tflite_teacher:
        teacher, tspec = load_run(cfg.teacher)
        if tspec.channels != spec.channels:
            raise DataError(f"teacher {cfg.teacher} and student differ in colour (RGB vs Y): export the teacher "
                            "to .tflite and pass that (its RGB outputs are turned into Y)")
        if tspec.scale != spec.scale:
            raise DataError(f"teacher {cfg.teacher} is x{tspec.scale}, student is x{spec.scale}")
        teacher.trainable = False
    disc = discriminator() if cfg.gan else None
    d_opt = keras.optimizers.Adam(1e-4) if cfg.gan else None
    if resume and (out / "last.weights.h5").exists():
        model.load_weights(out / "last.weights.h5")
        _load_opt(opt, model.trainable_variables, out / "last.opt.npz")
        if disc is not None and (out / "disc.weights.h5").exists():
            disc.load_weights(out / "disc.weights.h5")
            _load_opt(d_opt, disc.trainable_variables, out / "disc.opt.npz")
    elif cfg.extra.get("init"):  # a fine-tune (GAN or L2) starts from these weights
        model.load_weights(cfg.extra["init"])

    @tf.function(jit_compile=True)
    def step(lr, hr, t=None):
        with tf.GradientTape(persistent=True) as tape:
            sr = model(lr, training=True)
            loss = (losses.l2 if cfg.loss == "l2" else losses.l1)(sr, hr)
            if cfg.edge_weight:
                loss += cfg.edge_weight * losses.gradient_variance(sr, hr)
            if teacher is not None:
                loss += cfg.distill_weight * losses.distillation(sr, teacher(lr, training=False))
            if t is not None:
                loss += cfg.distill_weight * losses.distillation(sr, t)
            d_loss = tf.constant(0.0)
            if disc is not None:
                g_adv, d_loss = losses.adversarial(disc(hr, training=True), disc(sr, training=True))
                loss += cfg.adv_weight * g_adv
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        if disc is not None:
            d_opt.apply_gradients(zip(tape.gradient(d_loss, disc.trainable_variables), disc.trainable_variables))
        return loss

    def checkpoint():
        model.save_weights(out / "last.weights.h5")
        _save_opt(opt, out / "last.opt.npz")
        if disc is not None:
            disc.save_weights(out / "disc.weights.h5")
            _save_opt(d_opt, out / "disc.opt.npz")
        write_state(out, state)

    bar = tqdm(total=cfg.steps, initial=state["step"], desc=out.name, unit="step", disable=not progress)
    t0, s0, losses_seen = time.perf_counter(), state["step"], []
    while state["step"] < cfg.steps:
        losses_seen.append(float(step(*next(ds))))
        state["step"] += 1
        bar.update(1)
        s = state["step"]
        if s % cfg.ckpt_every == 0 or s == cfg.steps or (pairs and s % cfg.val_every == 0):
            rate = (s - s0) / (time.perf_counter() - t0)
            entry = {"step": s, "loss": float(np.mean(losses_seen)), "steps_per_s": round(rate, 2)}
            losses_seen = []
            if pairs and (s % cfg.val_every == 0 or s == cfg.steps):
                entry["val_psnr"] = round(validate(model, pairs, spec.scale), 3)
                if state["best_psnr"] is None or entry["val_psnr"] > state["best_psnr"]:
                    state["best_psnr"] = entry["val_psnr"]
                    model.save_weights(out / "best.weights.h5")
            bar.set_postfix({k: v for k, v in entry.items() if k != "step"})
            state["history"].append(entry)
            checkpoint()
    bar.close()
    if not pairs or not (out / "best.weights.h5").exists():
        model.save_weights(out / "best.weights.h5")
    checkpoint()
    return state
