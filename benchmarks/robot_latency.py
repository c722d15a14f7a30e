"""End-to-end latency on loopback: camera capture -> device -> UDP -> robot (SR at the robot) -> ROS 2 message
(rmw_zenoh wire format through a zenoh router) -> a subscriber. Latency = arrival - header.stamp (capture time).

    python benchmarks/robot_latency.py [--seconds 20] [--size 320x240] [--fps 10]

Writes benchmarks/results/robot_latency.json and the last frame as the topic carried it (ros2_topic_frame.png).

A robot slower than the stream (``--consumer-ms``: the Python API's consumer works that long on each frame; no ROS):

    python benchmarks/robot_latency.py --consumer-ms 300 --fps 15 --topology source --seconds 20

Latency = when the consumer takes the frame - capture; with the link's packet_loss / suggested_fec and the local
drops (frames skipped, kernel drops) as the receiver reports them. Writes robot_latency_consumer.json.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesr.bench import cpu_name  # noqa: E402
from edgesr.engine import Engine  # noqa: E402
from edgesr.linksim import free_port  # noqa: E402
from edgesr.outputs import open_output  # noqa: E402
from edgesr.outputs.image import typestore  # noqa: E402
from edgesr.pipeline import Pipeline  # noqa: E402
from edgesr.receiver import Receiver  # noqa: E402
from edgesr.sources import SyntheticSource  # noqa: E402
from edgesr.transports import open_sink  # noqa: E402

OUT = Path(__file__).parent / "results"


def session(mode: str, endpoint: str):
    import zenoh

    cfg = zenoh.Config()
    cfg.insert_json5("mode", json.dumps(mode))
    cfg.insert_json5("listen/endpoints" if mode == "router" else "connect/endpoints", json.dumps([endpoint]))
    cfg.insert_json5("scouting/multicast/enabled", "false")
    return zenoh.open(cfg)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=float, default=10)
    ap.add_argument("--consumer-ms", type=float, default=0, help="a consumer this slow, instead of ROS 2")
    ap.add_argument("--topology", choices=["source", "receiver"], default="receiver")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    if a.consumer_ms:
        return slow_consumer(a, size)
    store = typestore("benchmark")
    endpoint = f"tcp/127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    router, sub_s = session("router", endpoint), session("client", endpoint)
    arrivals, last = [], {}

    def on_sample(s):
        now = time.time()
        msg = store.deserialize_cdr(s.payload.to_bytes(), "sensor_msgs/msg/CompressedImage")
        arrivals.append(now - (msg.header.stamp.sec + msg.header.stamp.nanosec / 1e9))
        last["data"] = bytes(msg.data)

    sub = sub_s.declare_subscriber("0/robot/camera/image_sr/compressed/**", on_sample)
    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=True)
    rx.attach(open_output(f"ros2:///robot/camera/image_sr?router={endpoint}"))
    pipe = Pipeline(SyntheticSource(size, a.fps), None, [open_sink(f"udp://127.0.0.1:{port}", topology="receiver")],
                    size, scale=4).start()
    t = threading.Thread(target=lambda: sum(1 for _ in rx.frames(timeout=a.seconds + 5)), daemon=True)
    t.start()
    time.sleep(a.seconds)
    pipe.stop()
    rx.close()
    sub.undeclare()
    sub_s.close()
    router.close()
    lat = sorted(1000 * v for v in arrivals[5:])  # the first frames include the model's start-up
    eng = Engine()
    res = {"size": a.size, "fps": a.fps, "frames": len(arrivals), "path": "capture -> JPEG tiles -> UDP -> "
           "assemble -> SR x4 at the robot -> JPEG -> CDR -> zenoh router -> subscriber",
           "latency_ms_median": round(statistics.median(lat), 1), "latency_ms_p90": round(lat[int(0.9 * len(lat))], 1),
           "model": eng.card.name, "cpu": cpu_name()}
    OUT.mkdir(exist_ok=True)
    (OUT / "robot_latency.json").write_text(json.dumps(res, indent=1) + "\n")
    if "data" in last:
        img = cv2.imdecode(np.frombuffer(last["data"], np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(OUT / "ros2_topic_frame.png"), img)
    print(json.dumps(res))


def slow_consumer(a, size) -> None:
    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=True)
    eng = Engine(threads=1) if a.topology == "source" else None
    pipe = Pipeline(SyntheticSource(size, a.fps), eng, [open_sink(f"udp://127.0.0.1:{port}", topology=a.topology)],
                    size, scale=4).start()
    lat, t0 = [], time.monotonic()
    try:
        for f in rx.frames(timeout=10):
            lat.append(time.time() - f.timestamp)
            if time.monotonic() - t0 > a.seconds:
                break
            time.sleep(a.consumer_ms / 1000)
    finally:
        pipe.stop()
        rx.close()
    s = rx.summary()
    lat = sorted(1000 * v for v in lat[3:])  # the first frames include start-up
    res = {"size": a.size, "fps": a.fps, "topology": a.topology, "consumer_ms": a.consumer_ms, "frames": len(lat),
           "latency_ms_median": round(statistics.median(lat), 1), "latency_ms_p90": round(lat[int(0.9 * len(lat))], 1),
           **{k: s.get(k) for k in ("packet_loss", "suggested_fec", "skipped", "local_drops", "packets")},
           "cpu": cpu_name()}
    OUT.mkdir(exist_ok=True)
    (OUT / "robot_latency_consumer.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
