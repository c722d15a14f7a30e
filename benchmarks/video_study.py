"""The link study on real video (`link_study.py --video FILE`): PSNR-Y at the robot for H.264 (HR, LR + SR, LR +
bicubic) beside edgesr's intra-only tiles (HR tiles, LR + SR, LR + bicubic) and `auto` (the ModeChooser that
`serve` runs for topology "auto" on a budgeted link), at equal bitrate and frame rate, clean and with packet loss.

Frames: the video sampled at the cell's fps, cropped to a multiple of 4; LR = INTER_AREA / 4. Loss drops each
<= 1200-byte packet with probability `loss` (H.264: see h264.py; edgesr: lost tiles are filled from the previous
frame). edgesr's sizes are its real packets (header, CRC, tiles); each frame must fit its share of the budget
(bitrate / fps), at the highest quality that fits; a mode that cannot fit a frame "does not fit" (psnr_y null).
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import cv2
import h264
import numpy as np

from edgesr.assembly import FrameAssembler
from edgesr.encoder import StreamEncoder
from edgesr.fec import Recovery, is_parity, parity_share
from edgesr.metrics import psnr_y
from edgesr.modechoice import MODES, downscale
from edgesr.protocol import decode_packet
from edgesr.ratecontrol import fit_quality
from edgesr.replenish import Replenisher
from edgesr.transports.base import OutFrame

S, MTU = 4, 1200
CONFIGS = (("webp", 64), ("webp", 256), ("jpeg", 256))  # (codec, LR tile); HR tiles are 4x larger


def video_frames(path: Path, fps: float, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, int(round(src_fps / fps)))
    out, i = [], 0
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            h, w = (f.shape[0] // S) * S, (f.shape[1] // S) * S
            out.append(np.ascontiguousarray(f[:h, :w, ::-1]))
        i += 1
    cap.release()
    return out


def encode_stream(srcs, budget, codec, tile, lr: bool):
    """Per frame: its packets at the highest quality within ``budget`` bytes, or None (the frame is not sent)."""
    out = []
    for k, img in enumerate(srcs):
        fit = fit_quality(img, budget, codec, tile, MTU, seq=k + 1, scale=S if lr else 1, lr=lr)
        out.append(fit[1] if fit else None)
    return out


def encode_replenished(srcs, budget, codec, tile, lr: bool, threshold: float = 4.0, refresh: int = 2):
    """Conditional replenishment: per frame the changed tiles (+ `refresh` stale ones) at the highest quality
    within the budget; when even quality 1 cannot carry them, the most changed half, and so on."""
    rep, out = Replenisher(tile, threshold, refresh), []
    for k, img in enumerate(srcs):
        sel, fit = rep.select(img), None
        while sel and fit is None:
            fit = fit_quality(img, budget, codec, tile, MTU, seq=k + 1, scale=S if lr else 1, lr=lr, tiles=sel)
            sel = sel if fit else sel[:len(sel) // 2]
        if fit:
            rep.sent(img, sel)
        out.append(fit[1] if fit else None)
    return out


def sink_stream(sink, srcs, fps: float, scale: int, modes: list | None = None):
    """Each frame's packets as ``sink`` (a StreamEncoder) makes them (the product's own path); ``modes`` gets the mode
    the sink's chooser used for each frame (None: nothing sent yet)."""
    out = []
    for k, img in enumerate(srcs):
        out.append(sink.packets(OutFrame(k + 1, int(k * 1e6 / fps), img, None, scale, 0.0)))
        if modes is not None:
            modes.append(sink.chooser.mode)
    return out


def kbps_of(stream, fps: float) -> float:
    return round(sum(sum(map(len, pk)) for pk in stream if pk) * 8 * fps / len(stream) / 1000, 2)


def deliver(stream, loss: float, seed: int):
    """What the robot has after each frame (None before the first), losing packets with probability ``loss``;
    parity packets (edgesr.fec) rebuild lost ones as in the Receiver."""
    rnd, rec, shown, out = random.Random(seed), Recovery(), None, []
    asm = FrameAssembler(recovery=rec, hold_s=10.0)  # time here counts frames
    for k, pk in enumerate(stream):
        shown = arrive(pk or [], k, loss, rnd, rec, asm, shown)
        out.append(shown)
    return out


def arrive(packets, k: int, loss: float, rnd, rec, asm, shown):
    """Frame ``k``'s packets at the robot (each lost with probability ``loss``; parity rebuilds): the picture
    shown after it (``shown`` if none came)."""
    for raw in packets:
        if rnd.random() < loss:
            continue
        for p in rec.parity(raw) if is_parity(raw) else [raw]:
            rec.data(p)
            for f in asm.add(decode_packet(p), now=k):
                shown = f.image
    for f in asm.expire(now=k + 1.0, max_age=0.5):
        shown = f.image
    return shown


def deliver_closed(sink, srcs, fps: float, scale: int, loss: float, seed: int):
    """What the robot has after each frame when it can talk back: the stream is made frame by frame (the product's
    StreamEncoder.packets) and every refresh request the robot's assembler raises (a unit lost for good) reaches the
    sink before its next frame, unless the back channel loses it too (same ``loss``). Time here counts frames."""
    from edgesr.backchannel import encode_request

    rnd, back, rec, shown, out = random.Random(seed), random.Random(-seed), Recovery(), None, []
    asm = FrameAssembler(recovery=rec, hold_s=10.0)  # back: the back channel's losses, apart from the stream's
    asm.broken.every, asm.broken.give_up = fps, 20 * fps  # at most one request a second
    for k, img in enumerate(srcs):
        shown = arrive(sink.packets(OutFrame(k + 1, int(k * 1e6 / fps), img, None, scale, 0.0)), k, loss, rnd, rec,
                       asm, shown)
        for stream, seq in asm.broken.due(k):
            if back.random() >= loss:
                sink.on_request(encode_request(stream, seq), now=k / fps)
        out.append(shown)
    return out


def lossy(deliver_fn, stream, loss: float, hrs, finish, seeds) -> float | None:
    """Mean score over loss draws (one draw moved H.264 under 5 % loss by up to 4.5 dB); one draw when clean."""
    runs = [score(deliver_fn(stream, loss, sd), hrs, finish) for sd in (seeds if loss > 0 else seeds[:1])]
    return None if None in runs else round(float(np.mean(runs)), 3)


def score(shown, hrs, finish) -> float | None:
    ps = [psnr_y(finish(img), hr, S) for img, hr in zip(shown, hrs) if img is not None]
    return round(float(np.mean(ps)), 3) if len(ps) >= len(hrs) // 2 else None


def cell(hrs, eng, bitrate: float, fps: float, losses, seed: int = 1, draws: int = 5) -> list[dict]:
    seeds = list(range(seed, seed + draws))
    budget = bitrate / 8.0 / fps
    lrs = [downscale(h, S) for h in hrs]
    def bicubic(im):
        return cv2.resize(im, (im.shape[1] * S, im.shape[0] * S), interpolation=cv2.INTER_CUBIC)
    def same(im):
        return im
    rows = {loss: {} for loss in losses}
    # H.264 anchors
    for name, srcs, finish in (("h264_hr", hrs, same), ("h264_lr_sr", lrs, eng.upscale),
                               ("h264_lr_bicubic", lrs, bicubic)):
        units = h264.encode(srcs, fps, bitrate)
        for loss in losses:
            rows[loss][name] = {"psnr_y": lossy(h264.deliver, units, loss, hrs, finish, seeds),
                                "kbps": round(h264.kbps(units, fps), 2)}
    # edgesr's fixed modes: the best codec/tile on the first frames, then the whole sequence
    streams, best_cfg = {}, {}
    for name, srcs, finish in (("edgesr_hr_tiles", hrs, same), ("edgesr_lr_sr", lrs, eng.upscale),
                               ("edgesr_lr_bicubic", lrs, bicubic)):
        best = None
        for codec, tile in CONFIGS:
            t = tile * (1 if srcs is lrs else S)
            trial = score(deliver(encode_stream(srcs[:6], budget, codec, t, srcs is lrs), 0.0, seed), hrs[:6], finish)
            if trial is not None and (best is None or trial > best[0]):
                best = (trial, codec, t)
        stream = encode_stream(srcs, budget, best[1], best[2], srcs is lrs) if best else [None] * len(srcs)
        best_cfg[name] = (best[1], best[2]) if best else ("webp", 256)
        streams[name] = (stream, finish)
        for loss in losses:
            rows[loss][name] = {"psnr_y": lossy(deliver, stream, loss, hrs, finish, seeds) if best else None,
                                "kbps": kbps_of(stream, fps),
                                "config": f"{best[1]} tile {best[2]}" if best else "does not fit"}
    # conditional replenishment of tiles (static camera: send what changed, refresh the rest cyclically)
    for name, srcs, finish, tile in (("edgesr_hr_cr", hrs, same, 128), ("edgesr_lr_sr_cr", lrs, eng.upscale, 32)):
        stream = encode_replenished(srcs, budget, "webp", tile, srcs is lrs)
        for loss in losses:
            rows[loss][name] = {"psnr_y": lossy(deliver, stream, loss, hrs, finish, seeds),
                                "kbps": kbps_of(stream, fps),
                                "config": f"webp tile {tile}, changed > 4 levels + 2 refreshed a frame"}
    # H.264 inside edgesr's protocol (edgesr.video), a fixed mode each: what `codec = "h264"` sends
    for name, srcs, finish, topology in (("edgesr_h264_hr", hrs, same, "source"),
                                         ("edgesr_h264_lr_sr", lrs, eng.upscale, "receiver")):
        stream = sink_stream(StreamEncoder(topology=topology, codec="h264", bitrate=bitrate, fps=fps, mtu=MTU),
                             srcs, fps, S if srcs is lrs else 1)
        for loss in losses:
            rows[loss][name] = {"psnr_y": lossy(deliver, stream, loss, hrs, finish, seeds),
                                "kbps": kbps_of(stream, fps)}
    # auto: what serve sends with topology "auto" on this budgeted link (a real StreamEncoder + its ModeChooser over
    # tiles and H.264), with the sink's fec set from the link's loss and frame budget (edgesr.fec.parity_share: 25 %
    # parity at 5 %, none under 600 bytes a frame)
    def auto_sink(loss):
        return StreamEncoder(topology="measured", codec=best_cfg["edgesr_lr_sr"][0],
                             tile=best_cfg["edgesr_lr_sr"][1], bitrate=bitrate, fps=fps, mtu=MTU,
                             fec=parity_share(loss, bitrate / 8 / fps), measure_with=eng, modes=MODES)
    def finish(img):
        return eng.upscale(img) if img.shape[0] < hrs[0].shape[0] else img  # LR: SR at the robot
    for loss in losses:
        sink = auto_sink(loss)
        chooser, modes = sink.chooser, []
        stream = sink_stream(sink, hrs, fps, S, modes)
        # every frame shown counts, on any loss draw
        db = [np.mean([psnr_y(finish(img), hr, S)
                       for img, hr in zip(deliver(stream, loss, sd), hrs) if img is not None])
              for sd in (seeds if loss > 0 else seeds[:1])]
        rows[loss]["auto"] = {"psnr_y": round(float(np.mean(db)), 3), "kbps": kbps_of(stream, fps),
                              "fec": sink.fec, "modes": {str(m): modes.count(m) for m in sorted(set(modes), key=str)},
                              **chooser.stats}
    # auto on a link that carries the robot's refresh requests back (udp, serial: Receiver(feedback=True), the
    # default): a closed loop, so each loss draw makes its own stream; on a clean link nobody asks, it is auto
    for loss in losses:
        if loss == 0:
            rows[loss]["auto_feedback"] = {**rows[loss]["auto"], "note": "no loss, no requests: the auto stream"}
            continue
        db, kb, idr = [], [], []
        for sd in seeds:
            sink = auto_sink(loss)
            sent = []
            real = sink.packets
            sink.packets = lambda f: sent.append(real(f)) or sent[-1]
            shown = deliver_closed(sink, hrs, fps, S, loss, sd)
            db.append(np.mean([psnr_y(finish(img), hr, S) for img, hr in zip(shown, hrs) if img is not None]))
            kb.append(kbps_of(sent, fps))
            idr.append(sink.state()["refreshes"])
        rows[loss]["auto_feedback"] = {"psnr_y": round(float(np.mean(db)), 3), "kbps": round(float(np.mean(kb)), 2),
                                       "refreshes": round(float(np.mean(idr)), 2)}
    return [{"fps": fps, "bitrate": bitrate, "loss": loss, "frames": len(hrs), "modes": rows[loss]}
            for loss in losses]


def run(video: Path, eng, bitrates, fps_list, losses, n: int, out_json: Path) -> dict:
    """``eng``: the model the robot runs for LR + SR (and the device measures with)."""
    res = {"video": video.name, "model": eng.card.name, "rows": []}
    for fps in fps_list:
        hrs = video_frames(video, fps, n)
        for b in bitrates:
            t0 = time.time()
            res["rows"] += cell(hrs, eng, b, fps, losses)
            print(json.dumps({"fps": fps, "bitrate": b, "seconds": round(time.time() - t0, 1),
                              **{k: v["psnr_y"] for k, v in res["rows"][-len(losses)]["modes"].items()}}), flush=True)
            out_json.write_text(json.dumps(res, indent=1))
    return res


TABLE = [("h264_hr", "H.264 HR"), ("h264_lr_sr", "H.264 LR + SR"), ("edgesr_hr_tiles", "edgesr HR tiles"),
         ("edgesr_lr_sr", "edgesr LR + SR tiles"), ("edgesr_hr_cr", "edgesr HR replenished"),
         ("edgesr_h264_hr", "edgesr H.264 HR"), ("edgesr_h264_lr_sr", "edgesr H.264 LR + SR"), ("auto", "`auto`"),
         ("auto_feedback", "`auto` + back channel")]


def table(res: dict) -> str:
    """The README's markdown table: PSNR-Y per mode, bold = best in the row, and auto against the best H.264."""
    head = ("| link | " + " | ".join(t for _, t in TABLE)
            + " | auto - best H.264 (with back channel) | auto chose (frames) |")
    lines = [head, "|" + "---|" * (len(TABLE) + 3)]
    for r in sorted(res["rows"], key=lambda r: (r["loss"], r["fps"], r["bitrate"])):
        m = r["modes"]
        vals = {n: m.get(n, {}).get("psnr_y") for n, _ in TABLE}
        top = max(v for v in vals.values() if v is not None)
        h264 = max(m[n]["psnr_y"] for n in ("h264_hr", "h264_lr_sr", "h264_lr_bicubic") if m[n]["psnr_y"] is not None)
        cells = ["does not fit" if v is None else (f"**{v:.2f}**" if v == top else f"{v:.2f}") for v in vals.values()]
        chose = ", ".join(f"{k} {v}" for k, v in m["auto"]["modes"].items() if k != "None")
        fec = f", fec {m['auto']['fec']:g}" if m["auto"]["fec"] else ""
        lines.append(f"| {r['bitrate'] / 1000:g} kbit/s, {r['fps']:g} fps, {r['loss']:.0%} loss | " + " | ".join(cells)
                     + f" | {vals['auto'] - h264:+.2f}" + (f" ({vals['auto_feedback'] - h264:+.2f})" if r["loss"]
                                                             and vals["auto_feedback"] is not None else "")
                     + f" | {chose}{fec} |")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["h264_hr", "h264_lr_sr", "edgesr_hr_tiles", "edgesr_lr_sr", "edgesr_h264_hr", "edgesr_h264_lr_sr", "auto",
             "auto_feedback"]
    combos = sorted({(r["fps"], r["loss"]) for r in res["rows"]})
    fig, axes = plt.subplots(1, len(combos), figsize=(4.2 * len(combos), 3.8), squeeze=False)
    for ax, (fps, loss) in zip(axes[0], combos):
        rows = sorted((r for r in res["rows"] if r["fps"] == fps and r["loss"] == loss), key=lambda r: r["bitrate"])
        for n, color in zip(names, ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:red", "tab:brown",
                                    "black",
                                    "tab:gray")):
            pts = [(r["bitrate"] / 1000, r["modes"][n]["psnr_y"]) for r in rows
                   if r["modes"].get(n, {}).get("psnr_y") is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=n, color=color, linestyle="--" if n.startswith("h264") else "-",
                        linewidth=2.5 if n == "auto" else 1.5, alpha=0.8 if n == "auto" else 1.0)
        ax.set_xscale("log")
        ax.set_title(f"{fps:g} fps, {loss:.0%} loss", fontsize=10)
        ax.set_xlabel("kbit/s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("PSNR-Y at the robot (dB)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}
    fig.legend([handles[n] for n in names if n in handles], [n for n in names if n in handles], loc="lower center",
               ncol=len(names), fontsize=8)
    fig.subplots_adjust(bottom=0.22)
    fig.suptitle(f"{res['video']}: H.264 vs edgesr at equal bitrate (missing point: does not fit)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)


def live(video: Path, model, bitrate: float, fps: float, loss: float, seconds: float, corrupt: float = 0.0,
         fec: float = 0.0, mtu: int = MTU, rs: int = 0, feedback: bool = True) -> dict:
    """The product end to end: serve's pipeline (video file source, topology 'measured' = what 'auto' resolves
    to on a budgeted link) -> a paced pty radio -> Receiver (SR at the robot); PSNR-Y against the true frame."""
    from edgesr.engine import Engine
    from edgesr.linksim import PtyLink
    from edgesr.pipeline import Pipeline
    from edgesr.receiver import Receiver
    from edgesr.sources import VideoFileSource
    from edgesr.transports import open_sink

    truth = video_frames(video, 10.0, 10 ** 6)  # every frame, in order: seq k is frame k
    link = PtyLink(bitrate=bitrate, loss=loss, corrupt=corrupt, seed=1).start()
    q = f"baud={int(bitrate)}" + (f"&rs={rs}" if rs else "")
    sink = open_sink(f"serial://{link.tx}?{q}", topology="measured", codec="webp", tile=256,
                     fps=fps, mtu=mtu, bitrate=bitrate * 0.8, fec=fec,
                     measure_with=Engine(model, threads=1), modes=MODES)
    pipe = Pipeline(VideoFileSource(video, loop=False, fps=fps), None, [sink], scale=S)
    rx = Receiver(f"serial://{link.rx}?{q}", upscale=True, model=model, latest_only=False, feedback=feedback)
    pipe.start()
    got, t0 = [], time.monotonic()
    for f in rx.frames(timeout=seconds):
        got.append((f.seq, f.image))
        if time.monotonic() - t0 > seconds:
            break
    el = time.monotonic() - t0
    state = sink.encoder.chooser.state()
    pipe.stop()
    rx.close()
    link.close()
    ps = [psnr_y(img[:truth[seq].shape[0], :truth[seq].shape[1]], truth[seq], S) for seq, img in got
          if seq < len(truth) and img.shape[0] >= truth[seq].shape[0]]
    return {"bitrate": bitrate, "fps": fps, "loss": loss, "corrupt": corrupt, "fec": fec, "mtu": mtu, "rs": rs,
            "feedback": feedback, "refresh_requests": rx.stats["refresh_requests"],
            "refreshes": sink.stats["refreshes"],
            "seconds": round(el, 1), "frames": len(got), "fec_recovered": rx.recovery.stats["recovered"],
            "fps_delivered": round(len(got) / el, 2), "psnr_y": round(float(np.mean(ps)), 3) if ps else None,
            "link": state, "assembler": rx.assembler.stats}
