"""Check edgesr's ROS 2 topic with no ROS installed: a zenoh router (or a client of yours) and a subscriber that
decodes each sensor_msgs/CompressedImage the way a ROS 2 node would (rmw_zenoh's key and CDR; `robot` extra).

    python scripts/ros2_topic_check.py --router tcp/127.0.0.1:7447 --topic /robot/camera/image_sr --seconds 10
    # meanwhile: edgesr receive udp://0.0.0.0:5600 --publish "ros2:///robot/camera/image_sr?router=tcp/127.0.0.1:7447"

Prints one JSON line a second (messages, rate, size, latency from header.stamp) and a summary; exit 1 if nothing
came. ``--connect`` joins an existing router (e.g. `ros2 run rmw_zenoh_cpp rmw_zenohd`) instead of being one.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", default="tcp/127.0.0.1:7447", help="zenoh endpoint to listen on (or --connect to)")
    ap.add_argument("--connect", action="store_true", help="connect to a running router instead of being one")
    ap.add_argument("--topic", default="/robot/camera/image_sr", help="the ros2:// output's BASE")
    ap.add_argument("--domain", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    import zenoh

    from edgesr.outputs.image import typestore

    cfg = zenoh.Config()
    cfg.insert_json5("mode", json.dumps("client" if a.connect else "router"))
    cfg.insert_json5("connect/endpoints" if a.connect else "listen/endpoints", json.dumps([a.router]))
    cfg.insert_json5("scouting/multicast/enabled", "false")
    store = typestore("check")
    got: list[tuple[float, int, float]] = []

    def on_sample(s):
        msg = store.deserialize_cdr(s.payload.to_bytes(), "sensor_msgs/msg/CompressedImage")
        now = time.time()
        got.append((now, len(msg.data), now - (msg.header.stamp.sec + msg.header.stamp.nanosec / 1e9)))

    key = f"{a.domain}/{a.topic.strip('/')}/compressed/**"
    with zenoh.open(cfg) as session:
        sub = session.declare_subscriber(key, on_sample)
        t0, seen = time.monotonic(), 0
        while time.monotonic() - t0 < a.seconds:
            time.sleep(1.0)
            new, seen = got[seen:], len(got)
            print(json.dumps({"messages": len(got), "hz": len(new), "kb": round(sum(n for _, n, _ in new) / 1e3, 1),
                              "latency_ms": round(1000 * max((d for *_, d in new), default=0), 1)}), flush=True)
        sub.undeclare()
    print(json.dumps({"key": key, "messages": len(got), "seconds": a.seconds}))
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
