"""Where to super-resolve on a thin link: PSNR at the robot for HR JPEG/WebP, LR + SR at the receiver, and SR at
the source, at equal frame rate and bitrate; then a live run over a simulated 57.6 kbit/s serial radio.

    python benchmarks/link_study.py --out benchmarks/results        (~6 min on 2 cores)
    python benchmarks/link_study.py --video FILE --bitrates 19200,57600,115200 --fps 2,5 --loss 0,0.05 --json OUT
        (real video beside H.264 anchors: benchmarks/video_study.py)

Frames: 480x360 HR centre crops of the Set5/Set14 images that are large enough (LR = MATLAB bicubic / 4).
Every byte counts: sizes are of the real packets (protocol header, CRC, tiles) that edgesr would send.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.engine import Engine  # noqa: E402
from edgesr.imageio import read_rgb, write_rgb  # noqa: E402
from edgesr.metrics import degrade, imresize, psnr_y  # noqa: E402
from edgesr.modechoice import delivered  # noqa: E402
from edgesr.ratecontrol import fit_quality  # noqa: E402

HR_W, HR_H, S = 480, 360, 4
MODES = {"hr": "HR image, no SR", "sr_receiver": "LR + SR at the robot", "sr_source": "SR at the source",
         "lr_bicubic": "LR + bicubic at the robot"}


def frames(shared: Path) -> list[np.ndarray]:
    out = []
    for f in sorted((shared / "data" / "val").glob("*/*.png")):
        img = read_rgb(f)
        h, w = img.shape[:2]
        if h >= HR_H and w >= HR_W:
            y, x = (h - HR_H) // 2, (w - HR_W) // 2
            out.append(np.ascontiguousarray(img[y:y + HR_H, x:x + HR_W]))
    return out


def fit(img: np.ndarray, budget: float, codec: str, tile: int):
    """Highest quality whose packets fit ``budget`` bytes: (quality, bytes, decoded image) or None."""
    r = fit_quality(img, budget, codec, tile, mtu=256)
    if r is None:
        return None
    q, packets = r
    return q, sum(map(len, packets)), delivered(packets)


def static_study(hrs, eng, bitrates, fps, tiles):
    rows = []
    lrs = [degrade(h, S) for h in hrs]
    srs = [eng.upscale(lr) for lr in lrs]
    for b in bitrates:
        budget = b / 8.0 / fps
        for mode in MODES:
            best = None
            for codec in ("jpeg", "webp"):
                for tile in tiles:
                    ps, qs, sizes = [], [], []
                    for hr, lr, sr in zip(hrs, lrs, srs):
                        src = {"hr": hr, "sr_source": sr}.get(mode, lr)
                        r = fit(src, budget, codec, tile if mode in ("sr_receiver", "lr_bicubic") else tile * S)
                        if r is None:
                            ps = None
                            break
                        q, n, img = r
                        if mode == "sr_receiver":
                            img = eng.upscale(img)
                        elif mode == "lr_bicubic":
                            img = imresize(img, S)
                        ps.append(psnr_y(img, hr, S))
                        qs.append(q)
                        sizes.append(n)
                    if ps and (best is None or np.mean(ps) > best["psnr_y"]):
                        best = {"bitrate": b, "mode": mode, "codec": codec, "tile_lr": tile, "fps": fps,
                                "psnr_y": round(float(np.mean(ps)), 3), "quality_median": int(np.median(qs)),
                                "bytes_per_frame": int(np.mean(sizes))}
            rows.append(best or {"bitrate": b, "mode": mode, "fps": fps, "psnr_y": None})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def live_run(hrs, model, mode: str, bitrate: float, corrupt: float, loss: float, seconds: float, fps: float):
    """The real pipeline over a paced pty link; PSNR of what the robot gets against the true HR frame."""
    from edgesr.linksim import PtyLink
    from edgesr.pipeline import Pipeline
    from edgesr.receiver import Receiver
    from edgesr.sources import ImageFolderSource
    from edgesr.transports import open_sink

    with tempfile.TemporaryDirectory() as d:
        for i, h in enumerate(hrs):
            write_rgb(Path(d) / f"{i:03d}.png", h if mode == "hr" else degrade(h, S))
        link = PtyLink(bitrate=bitrate, corrupt=corrupt, loss=loss, seed=1).start()
        eng = Engine(model, threads=1) if mode == "sr_source" else None
        sink = open_sink(f"serial://{link.tx}?baud={int(bitrate)}",
                         topology="source" if mode == "sr_source" else "receiver",
                         codec="webp", quality=50, tile=32 if mode == "sr_receiver" else 64, fps=fps, mtu=128)
        pipe = Pipeline(ImageFolderSource(Path(d), True, fps), eng, [sink], scale=S if mode != "hr" else 1)
        rx = Receiver(f"serial://{link.rx}?baud={int(bitrate)}", upscale=True, model=model, latest_only=False)
        pipe.start()
        got, t_end = [], time.monotonic() + seconds
        for f in rx.frames(timeout=seconds):
            got.append((f.seq, f.image, len(f.missing_tiles)))
            if time.monotonic() > t_end:
                break
        pipe.stop()
        rx.close()
        link.close()
    ps = [psnr_y(img, hrs[seq % len(hrs)], S) for seq, img, _ in got if img.shape[:2] == (HR_H, HR_W)]
    a = rx.assembler.stats
    return {"mode": mode, "bitrate": bitrate, "corrupt": corrupt, "loss": loss, "frames": len(got),
            "fps_delivered": round(len(got) / seconds, 3), "psnr_y": round(float(np.mean(ps)), 3) if ps else None,
            "missing_tiles_per_frame": round(a["tiles_missing"] / max(1, a["frames"]), 2),
            "partial_frames": a["partial"], "bad_packets": rx.stats["bad_packets"]}


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for mode, label in MODES.items():
        pts = [(r["bitrate"], r["psnr_y"]) for r in rows if r["mode"] == mode and r["psnr_y"] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("link bitrate (bit/s), frame rate held equal")
    ax.set_ylabel("PSNR-Y at the robot (dB)")
    ax.set_title(f"{HR_W}x{HR_H} frames, x{S}: what to send over a thin link")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--model", default=None, help="x4 model (default: shipped real-time int8)")
    ap.add_argument("--bitrates", default="19200,57600,250000,1000000")
    ap.add_argument("--fps", default="2", help="frame rate (--video: a list, e.g. 2,5)")
    ap.add_argument("--live-seconds", type=float, default=25.0)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--live-only", action="store_true", help="keep the static rows of an earlier run")
    ap.add_argument("--video", type=Path, default=None, help="study a real video beside H.264 (video_study.py)")
    ap.add_argument("--loss", default="0", help="--video: packet loss probabilities, e.g. 0,0.05")
    ap.add_argument("--frames", type=int, default=64, help="--video: frames per cell")
    ap.add_argument("--json", type=Path, default=None, help="--video: result file")
    ap.add_argument("--video-live", action="store_true", help="--video: only the live runs (serve -> pty -> receive)")
    ap.add_argument("--corrupt", default="0", help="--video-live: byte corruption probabilities, e.g. 0,0.01")
    ap.add_argument("--fec", default="0", help="--video-live: parity shares to compare, e.g. 0,0.25,0.5")
    ap.add_argument("--mtu", type=int, default=1200, help="--video-live: packet size on the link")
    ap.add_argument("--rs", default="0",
                    help="--video-live: Reed-Solomon bytes per 255 in each serial frame, e.g. 0,16")
    ap.add_argument("--feedback", default="1",
                    help="--video-live: the robot asks for refreshes (1) or not (0), e.g. 0,1")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.video:
        sys.path.insert(0, str(Path(__file__).parent))
        import video_study

        out = a.json or a.out / "link_video.json"
        if a.video_live:
            runs = [video_study.live(a.video, a.model, float(b), float(f), float(v), a.live_seconds, float(c), float(e),
                                     a.mtu, int(r), fb == "1")
                    for b in a.bitrates.split(",") for f in str(a.fps).split(",") for v in a.loss.split(",")
                    for c in a.corrupt.split(",") for e in a.fec.split(",") for r in a.rs.split(",")
                    for fb in a.feedback.split(",")]
            for r in runs:
                print(json.dumps(r))
            out.write_text(json.dumps({"video": a.video.name, "live": runs}, indent=1))
            return
        res = video_study.run(a.video, Engine(a.model, threads=2, scale=4), [float(b) for b in a.bitrates.split(",")],
                              [float(f) for f in str(a.fps).split(",")], [float(v) for v in a.loss.split(",")],
                              a.frames, out)
        video_study.plot(res, out.with_suffix(".png"))
        out.with_suffix(".md").write_text(video_study.table(res) + "\n")
        print(f"wrote {out}, {out.with_suffix('.png')} and {out.with_suffix('.md')}")
        return
    hrs = frames(a.shared)
    eng = Engine(a.model, threads=2)
    print(f"{len(hrs)} frames {HR_W}x{HR_H}, model {eng.path.name}", flush=True)
    prev = a.out / "link_study.json"
    if a.live_only:
        rows = json.loads(prev.read_text())["static"]
    else:
        rows = static_study(hrs, eng, [float(b) for b in a.bitrates.split(",")], float(a.fps), tiles=(32, 64, 128))
        plot(rows, a.out / "psnr_vs_bitrate.png")
    live = []
    if not a.skip_live:
        for corrupt, loss in ((0.0, 0.0), (0.0, 0.05), (0.01, 0.05)):
            for mode in ("hr", "sr_receiver", "sr_source"):
                live.append(live_run(hrs, a.model, mode, 57600, corrupt, loss, a.live_seconds, float(a.fps)))
                print(json.dumps(live[-1]), flush=True)
    if a.skip_live and prev.exists():  # keep the live runs of an earlier invocation
        live = json.loads(prev.read_text()).get("live_57600", [])
    prev.write_text(json.dumps({"static": rows, "live_57600": live}, indent=1))
    print(f"wrote {a.out / 'link_study.json'} and {a.out / 'psnr_vs_bitrate.png'}")


if __name__ == "__main__":
    main()
