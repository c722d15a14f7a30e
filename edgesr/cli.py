"""`edgesr` command line: models, info, upscale, bench. Errors become one line on stderr and exit code 2."""
from __future__ import annotations

import os

# our own one-line errors replace OpenCV's and FFmpeg's C-level chatter on stderr (read when cv2 is imported)
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import functools
import json
import signal
import sys
import time
from pathlib import Path

import click

from .encoder import TOPOLOGIES
from .errors import EdgeSRError
from .interpreter import BACKENDS as _BACKENDS

BACKENDS = click.Choice(_BACKENDS)
SCALE = click.IntRange(2, 4)


def friendly(fn=None, *, also: tuple = ()):
    """Expected errors (EdgeSRError and ``also``) become one line on stderr and exit code 2, no traceback."""
    if fn is None:
        return lambda f: friendly(f, also=also)

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except (EdgeSRError, *also) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)
    return wrapper


def dtype_option(fn):
    return click.option("--dtype", type=click.Choice(["auto", "int8", "float32"]), default="auto", show_default=True,
                        help="auto: the faster of the model and its exact twin on this CPU (measured once, "
                             "cached; `edgesr calibrate --twins` measures again)")(fn)


def size_wxh(value) -> tuple[int, int]:
    """click type for sizes: always WIDTHxHEIGHT (e.g. 320x240), everywhere on both command lines."""
    if isinstance(value, tuple):
        return value
    try:
        w, h = (int(v) for v in value.lower().split("x"))
        if w < 1 or h < 1:
            raise ValueError
        return w, h
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None


def texture_option(default):
    return click.option("--texture-threshold", type=click.FloatRange(0, 255), default=default,
                        show_default=default is not None,
                        help="adaptive tiles: run the model only where mean |gradient| > this (levels); 0 = everywhere")


@click.group()
@click.version_option(package_name="edgesr")
@click.option("-v", "--verbose", is_flag=True, help="debug logging, and the interpreter's own messages")
def main(verbose) -> None:
    """Real-time super-resolution for edge boards."""
    import logging

    from . import interpreter

    interpreter.VERBOSE = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@friendly
def models(as_json):
    """List the shipped models."""
    from .interpreter import is_edgetpu_model
    from .modelcard import DEFAULTS, load_card, shipped_models

    rows = []
    for p in shipped_models():
        c = load_card(p)
        set5 = (c.metrics.get("Set5") or {}).get("psnr_y") if c else None
        rows.append({"name": p.stem, "scale": c and c.scale, "dtype": c and c.dtype,
                     "tile": f"{c.tile[1]}x{c.tile[0]}" if c and c.tile else "dynamic",  # WIDTHxHEIGHT, as everywhere
                     "params": c and c.params, "color": c and c.color,
                     "set5_psnr_y": set5, "backend": "edgetpu" if is_edgetpu_model(p) else "cpu",
                     "default": p.stem in DEFAULTS.values()})
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'name':<42} {'x':>2} {'dtype':<8} {'color':<5} {'tile':<8} {'params':>7} {'Set5 dB':>8}  backend")
    for r in rows:
        set5 = f"{r['set5_psnr_y']:8.2f}" if r["set5_psnr_y"] else f"{'-':>8}"  # not measured (e.g. tile variants)
        click.echo(f"{r['name'] + (' *' if r['default'] else ''):<42} {r['scale']:>2} {r['dtype']:<8} "
                   f"{r['color'] or '':<5} {r['tile']:<8} {r['params'] or 0:>7} {set5}  {r['backend']}")
    click.echo("* default for its scale")


@main.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@friendly
def info(model, as_json):
    """IO shapes, dtypes and quantization, op list, Edge TPU status and the card of MODEL."""
    from dataclasses import asdict

    import numpy as np

    from .interpreter import interpreter_api, is_edgetpu_model, open_interpreter
    from .modelcard import load_card, resolve_model

    path = resolve_model(model)
    name = interpreter_api()[0]
    compiled = is_edgetpu_model(path)
    it = open_interpreter(path, 1, allocate=False)
    def io(d):
        return {"name": d["name"], "shape": [int(v) for v in d.get("shape_signature", d["shape"])],
                "dtype": np.dtype(d["dtype"]).name,
                "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
    card = load_card(path)
    ops = [o["op_name"] for o in it._get_ops_details()]
    res = {"model": str(path), "interpreter": name, "edgetpu_compiled": compiled,
           "inputs": [io(d) for d in it.get_input_details()], "outputs": [io(d) for d in it.get_output_details()],
           "ops": ops, "card": asdict(card) if card else None}
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    click.echo(f"{path}  ({name}; {'Edge TPU-compiled' if compiled else 'not Edge TPU-compiled'})")
    for k in ("inputs", "outputs"):
        for d in res[k]:
            click.echo(f"  {k[:-1]:<6} {d['name']}: {d['shape']} {d['dtype']} q={d['quantization']}")
    click.echo(f"  ops    {len(ops)}: {', '.join(ops)}")
    if card:
        click.echo(f"  card   x{card.scale} {card.dtype} {card.variant} tile={card.tile} params={card.params} "
                   f"MACs/out px={card.macs_per_output_pixel} margin={card.margin}")
        for k, m in card.metrics.items():
            click.echo(f"         {k}: {json.dumps(m)}")
    else:
        click.echo("  card   none (pass --scale when running it)")


@main.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--model", default=None, help="shipped model name or .tflite path (default: real-time x4 int8)")
@click.option("--backend", type=BACKENDS, default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="CPU threads (default: all cores)")
@click.option("--scale", type=SCALE, default=None, help="for models without a card")
@texture_option(0.0)
@click.option("--max-output-mp", type=click.FloatRange(0.01), default=256.0, show_default=True,
              help="refuse inputs whose upscaled size exceeds this many megapixels (3 bytes each in memory)")
@dtype_option
@friendly
def upscale(input, output, model, backend, threads, scale, texture_threshold, max_output_mp, dtype):
    """Upscale an image, a folder of images (OUTPUT folder gets <stem>.png) or a video (same fps)."""
    from .engine import Engine
    from .media import kind_of, upscale_folder, upscale_image, upscale_video

    kind = kind_of(input)
    eng = Engine(model, backend=backend, threads=threads, scale=scale, texture_threshold=texture_threshold,
                 dtype=dtype)
    failed = []
    if kind == "image":
        upscale_image(eng, input, output, max_output_mp)
        n = 1
    elif kind == "folder":
        n, failed = upscale_folder(eng, input, output, click.progressbar, max_output_mp)
    else:
        n = upscale_video(eng, input, output, click.progressbar, max_output_mp)
    click.echo(f"{n} {kind if n == 1 else 'frames' if kind == 'video' else 'images'} -> {output} "
               f"({eng.path.name}, x{eng.scale}, {eng.backend})", err=True)
    for line in failed:
        click.echo(f"error: {line}", err=True)
    if failed:
        sys.exit(2)


@main.command()
@click.option("--model", default=None, help="shipped model name or .tflite path")
@click.option("--backend", type=BACKENDS, default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=None)
@click.option("--input-size", default="320x240", show_default=True, type=size_wxh, help="LR WIDTHxHEIGHT")
@click.option("--seconds", type=click.FloatRange(0.5, 3600), default=10.0, show_default=True)
@click.option("--scale", type=SCALE, default=None, help="for models without a card")
@click.option("--json", "as_json", is_flag=True)
@texture_option(0.0)
@dtype_option
@friendly
def bench(model, backend, threads, input_size, seconds, scale, as_json, texture_threshold, dtype):
    """Latency/fps of a model on a real image vs OpenCV bicubic to the same size, in one run."""
    from .bench import run_bench

    r = run_bench(model, backend, threads, input_size, seconds, texture_threshold, scale=scale, dtype=dtype)
    if as_json:
        click.echo(json.dumps(r))
        return
    click.echo(f"{r['model']} on {r['backend']} ({r['threads']} threads, {r['interpreter']}): "
               f"{r['input_size']} -> {r['output_size']}")
    t = r.get("twin_choice")
    if t and t.get("ms"):
        ms = ", ".join(f"{k} {v} ms" for k, v in t["ms"].items())
        click.echo(f"  twins   ran {t['dtype']} ({r['model']}): {t['ratio']:.2f}x the other twin's time, "
                   f"{'cached' if t['cached'] else 'measured now'} ({ms})")
    click.echo(f"  model   median {r['ms_median']:.2f} ms  p90 {r['ms_p90']:.2f} ms  {r['fps_median']:.1f} fps "
               f"({r['frames']} frames; interpreter {r['invoke_share']:.0%} of frame time)")
    if texture_threshold:
        click.echo(f"  adaptive tiles: threshold {texture_threshold:g}, "
                   f"the model ran on {r['sr_fraction']:.0%} of tiles")
    click.echo(f"  compute {r['gmac_per_frame']:.3f} GMAC/frame -> {r['gmac_per_s']:.1f} GMAC/s inside the interpreter")
    click.echo(f"  bicubic median {r['bicubic_ms_median']:.2f} ms  -> model/bicubic {r['ratio_to_bicubic']:.1f}x")
    click.echo(f"  memory  peak RSS {r['peak_rss_mb']:.0f} MB "
               f"(after warm-up {r['rss_start_mb']:.0f} MB, end {r['rss_end_mb']:.0f} MB)")


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="TOML config file")
@click.option("--source", default=None, help="synthetic | picamera2 | /dev/videoN | video file | image folder")
@click.option("--size", default=None, type=size_wxh, help="capture WIDTHxHEIGHT (default: the source's own)")
@click.option("--fps", type=click.FloatRange(0.1, 240), default=None)
@click.option("--sink", "sinks", multiple=True, help="udp://HOST:PORT, tcp://HOST:PORT, serial:///dev/ttyX?baud=N, "
              "http://HOST:PORT (repeatable)")
@click.option("--topology", type=click.Choice(["auto", *TOPOLOGIES]), default=None,
              help="for --sink: send upscaled frames (source), LR frames for the robot to upscale (receiver), or "
                   "whichever of the two measures better on the link (measured); auto: measured for serial and "
                   "--bitrate links, source otherwise")
@click.option("--bitrate", type=click.FloatRange(0), default=None, help="for --sink: link budget in bits/s")
@click.option("--model", default=None)
@click.option("--backend", type=BACKENDS, default=None)
@click.option("--threads", type=click.IntRange(1, 64), default=None)
@click.option("--health", default=None, help="HOST:PORT of /healthz /metrics /state ('' disables)")
@click.option("--duration", type=click.FloatRange(0), default=None, help="stop after this many seconds")
@texture_option(None)
@friendly
def serve(config_path, source, size, fps, sinks, topology, bitrate, model, backend, threads, health, duration,
          texture_threshold):
    """Capture, upscale and stream to robots until SIGTERM (systemd: Type=notify)."""
    from . import config as C
    from .service import run

    src = {k: v for k, v in (("url", source), ("fps", fps)) if v is not None}
    if size:
        src["width"], src["height"] = size
    per_sink = {k: v for k, v in (("topology", topology), ("bitrate", bitrate)) if v is not None}
    m = {k: v for k, v in (("backend", backend), ("threads", threads), ("texture_threshold", texture_threshold))
         if v is not None}
    if model:
        m.update(name=model, ladder=[])
    over = {"source": src, "model": m}
    if sinks:
        over["sink"] = [{"url": u, **per_sink} for u in sinks]
    if health is not None:
        over["health"] = {"listen": health}
    sys.exit(run(C.load(config_path, over), duration))


@main.command()
@click.argument("config_path", type=click.Path(path_type=Path))
@click.option("--seconds", type=click.FloatRange(0.2, 600), default=3.0, show_default=True, help="per rung")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="table path (default: the config's latency_table, <config>.latency.json)")
@click.option("--twins", is_flag=True, help="instead: measure again which exact twin of the model is faster here")
@friendly
def calibrate(config_path, seconds, out, twins):
    """Measure each model of the config's [model] ladder on this board; write the latency table it uses.
    With --twins: measure which exact twin (int8 or float32) of the config's model is faster here, again."""
    from . import config as C
    from .imageio import write_text_atomic
    from .ladder import calibrate as measure_ladder
    from .ladder import rungs_from_config

    cfg = C.load(config_path)
    m = cfg.model
    if twins:
        from .modelcard import resolve_model
        from .twins import choose

        size = (cfg.source.width, cfg.source.height) if cfg.source.width else (320, 240)
        for name in m.ladder or [m.name or None]:
            if name == "bicubic":
                continue
            path, t = choose(resolve_model(name, m.scale), "auto", m.threads or os.cpu_count() or 1, size,
                             refresh=True)
            click.echo(json.dumps({"model": name or path.name, "runs": path.name, **(t or {"twin": None})}))
        return
    if not m.ladder:
        raise C.ConfigError(f"{config_path}: model.ladder is empty; nothing to calibrate")
    size = (cfg.source.width, cfg.source.height)
    rungs = rungs_from_config(m)
    budget = 1000 / (m.target_fps or cfg.source.fps)
    click.echo(f"{size[0]}x{size[1]} -> x{m.scale}, {m.backend}, budget {budget:.1f} ms/frame "
               f"({m.target_fps or cfg.source.fps:g} fps), {seconds:g} s per rung, "
               f"{len(rungs)} rungs: about {seconds * len(rungs) + len(rungs):.0f} s", err=True)

    def show(r):
        fit = "fits" if r["ms_median"] <= budget else "over budget"
        click.echo(f"  {r['model']:<32} median {r['ms_median']:8.2f} ms  p90 {r['ms_p90']:8.2f} ms  "
                   f"{1000 / r['ms_median']:7.1f} fps  {fit}", err=True)

    table = measure_ladder(rungs, size, m.backend, m.threads, seconds, progress=show,
                           step=lambda i, n, name: click.echo(f"  measuring {i}/{n}: {name}", err=True))
    path = out or Path(m.latency_table)
    write_text_atomic(path, json.dumps(table, indent=1) + "\n")
    click.echo(f"latency table -> {path}", err=True)


@main.command()
@click.option("--bitrate", type=click.FloatRange(300, 10_000_000), default=57600.0, show_default=True,
              help="bits/s on the air (8N1: 10 bits a byte)")
@click.option("--loss", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="share of frames (packets) lost, both ways")
@click.option("--corrupt", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="share of bytes with one bit flipped")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--seconds", type=click.FloatRange(0), default=0.0, help="stop after this long (0: at SIGTERM/Ctrl-C)")
@friendly
def radio(bitrate, loss, corrupt, seed, seconds):
    """A simulated serial radio between two pseudo-terminals: rehearse a thin link on one machine
    (edgesr serve --sink DEVICE_END ... and edgesr receive ROBOT_END in two other terminals)."""
    from .linksim import PtyLink

    link = PtyLink(bitrate=bitrate, corrupt=corrupt, loss=loss, seed=seed, keep_arrivals=False).start()
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    q = f"baud={int(bitrate)}"
    click.echo(f"device end: serial://{link.tx}?{q}")
    click.echo(f"robot end:  serial://{link.rx}?{q}", nl=True)
    sys.stdout.flush()
    t0, shown = time.monotonic(), time.monotonic()
    try:
        while not stop and (not seconds or time.monotonic() - t0 < seconds):
            time.sleep(0.1)
            if time.monotonic() - shown >= 10:  # progress for a long rehearsal
                shown = time.monotonic()
                click.echo(json.dumps({"seconds": round(shown - t0), **link.stats}), err=True)
    finally:
        link.close()
    click.echo(json.dumps({"seconds": round(time.monotonic() - t0, 1), **link.stats}))


@main.command()
@click.argument("url", required=False)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML with a [receiver] table (url, publish, record, key_file, model, upscale, fec_wait, "
                   "feedback)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="write frames as PNGs")
@click.option("--count", type=click.IntRange(1), default=None, help="stop after N frames")
@click.option("--timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="stop after this many seconds without a frame")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), default=None, help="shared HMAC key")
@click.option("--no-upscale", is_flag=True, help="keep LR frames as they arrive (no SR at the receiver)")
@click.option("--model", default=None, help="model for SR at the receiver (default: shipped, by frame scale)")
@click.option("--fec-wait", type=click.FloatRange(0, 60), default=None,
              help="seconds an H.264 unit with a lost packet waits for parity (default 5; 0: never wait)")
@click.option("--no-feedback", is_flag=True,
              help="never ask the device for a refresh (an IDR after an H.264 unit lost for good; udp, serial)")
@click.option("--show", is_flag=True, help="display frames in a window (needs an OpenCV build with GUI)")
@click.option("--all-frames", is_flag=True, help="keep every frame (recording) instead of skipping to the newest")
@click.option("--publish", "publish", multiple=True,
              help="republish frames: ros2:///TOPIC?router=tcp/HOST:7447&distro=jazzy, foxglove://HOST:PORT "
                   "(repeatable)")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="record the frames as ROS 2 sensor_msgs/CompressedImage into this .mcap file")
@dtype_option
@friendly
def receive(url, config_path, out, count, timeout, key_file, no_upscale, model, fec_wait, no_feedback, show,
            all_frames, publish, record, dtype):
    """Receive frames from a device (udp:// binds locally; tcp://, http:// connect; serial:// opens the port)
    and optionally republish them to ROS 2, Foxglove and MCAP (docs/robots.md)."""
    from .config import ReceiverConfig, load_receiver, read_key
    from .errors import ConfigError
    from .imageio import write_rgb
    from .outputs import open_output
    from .receiver import Receiver

    rc = load_receiver(config_path) if config_path else ReceiverConfig()
    url = url or rc.url
    if not url:
        raise ConfigError("no URL: pass one (e.g. udp://0.0.0.0:5600) or url = ... in the [receiver] table")
    publish = list(publish) or rc.publish
    record = record or (Path(rc.record) if rc.record else None)
    outputs = [open_output(u) for u in publish]
    if record:
        outputs.append(open_output(f"mcap://{Path(record).resolve()}"))
    rx = Receiver(url, key=read_key(key_file or rc.key_file), upscale=not no_upscale and rc.upscale,
                  model=model or rc.model or None, latest_only=not all_frames,
                  fec_wait=rc.fec_wait if fec_wait is None else fec_wait, feedback=rc.feedback and not no_feedback,
                  dtype=dtype)
    try:
        for o in outputs:
            rx.attach(o)
    except BaseException:
        rx.close()
        raise
    if out:
        out.mkdir(parents=True, exist_ok=True)
    n, t_first, t_last = 0, None, None
    signalled = []

    def stop(signum, _frame):  # SIGTERM (systemd, ROS launch) and SIGINT: finish cleanly, files complete
        signalled.append(signal.Signals(signum).name)
        rx.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        for f in rx.frames(timeout=timeout):
            t_last = time.monotonic()
            t_first = t_first or t_last
            n += 1
            if out:
                write_rgb(out / f"frame_{f.seq:08d}.png", f.image)
            if show:
                import cv2
                cv2.imshow("edgesr", f.image[:, :, ::-1])
                cv2.waitKey(1)
            if count and n >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        rx.close()
    s = rx.summary()
    # first to last frame: the final --timeout wait is not part of the rate
    s["fps"] = round((n - 1) / (t_last - t_first), 2) if n > 1 and t_last > t_first else None
    click.echo(json.dumps(s))
    if n == 0 and signalled:
        click.echo(f"stopped by {signalled[0]} before the first frame from {url}", err=True)
    elif n == 0:
        why = rx.why_nothing()
        click.echo(f"error: no frames received from {url} within {timeout:g} s" + (f": {why}" if why else ""),
                   err=True)
        sys.exit(1)
