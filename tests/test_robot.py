"""Robot side: received frames republished to ROS 2 (rmw_zenoh's wire format), Foxglove and MCAP, with no ROS.

The subscribers here are written from ros2/rmw_zenoh docs/design.md and the Foxglove WebSocket protocol, not from
edgesr's publishers: key expression, attachment layout, liveliness tokens, CDR payload, protobuf channel."""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time

import cv2
import numpy as np
import pytest

from edgesr.engine import Engine
from edgesr.errors import ConfigError
from edgesr.linksim import free_port
from edgesr.pipeline import Pipeline
from edgesr.receiver import Receiver
from edgesr.sources import SyntheticSource
from edgesr.transports import open_sink

from conftest import FIX, ROOT, run_cli

TINY = FIX / "tiny_x2_float32.tflite"
SIZE = (96, 64)


def device(port):
    """A real device pipeline sending LR frames (SR at the robot, x2) over UDP on loopback."""
    eng = Engine(TINY, threads=1)
    return Pipeline(SyntheticSource(SIZE, 10), eng, [open_sink(f"udp://127.0.0.1:{port}", topology="receiver")],
                    SIZE).start()


def receive_for(rx, seconds):
    t_end = time.monotonic() + seconds
    n = 0
    for _ in rx.frames(timeout=seconds):
        n += 1
        if time.monotonic() > t_end:
            break
    return n


def zenoh_session(mode, endpoint):
    import zenoh

    cfg = zenoh.Config()
    cfg.insert_json5("mode", json.dumps(mode))
    cfg.insert_json5("listen/endpoints" if mode == "router" else "connect/endpoints", json.dumps([endpoint]))
    cfg.insert_json5("scouting/multicast/enabled", "false")
    return zenoh.open(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("distro", ["jazzy", "humble"])
def test_ros2_topic_over_rmw_zenoh(distro):
    from rosbags.typesys import Stores, get_typestore

    from edgesr.outputs import open_output

    ts = get_typestore(Stores.ROS2_JAZZY)
    type_hash = ts.hash_rihs01("sensor_msgs/msg/CompressedImage") if distro == "jazzy" else "TypeHashNotSupported"
    # design.md: <domain_id>/<fully_qualified_name>/<type_name>/<type_hash>, image_transport's <base>/compressed
    key = f"3/robot/camera/image_sr/compressed/sensor_msgs::msg::dds_::CompressedImage_/{type_hash}"
    endpoint = f"tcp/127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    router = zenoh_session("router", endpoint)
    sub_session = zenoh_session("client", endpoint)
    samples, tokens = [], []
    sub = sub_session.declare_subscriber(key, lambda s: samples.append(
        (s.payload.to_bytes(), s.attachment.to_bytes() if s.attachment is not None else b"", time.time())))
    lsub = sub_session.liveliness().declare_subscriber("@ros2_lv/**", lambda s: tokens.append(
        (str(s.key_expr), str(s.kind).split(".")[-1])))
    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=True, threads=1)
    rx.attach(open_output(f"ros2:///robot/camera/image_sr?router={endpoint}&domain=3&distro={distro}"
                          "&frame_id=cam_optical"))
    pipe = device(port)
    try:
        time.sleep(0.5)
        receive_for(rx, 3)
    finally:
        pipe.stop()
        rx.close()
    time.sleep(0.5)
    for s in (sub, lsub):
        s.undeclare()
    sub_session.close()
    router.close()

    assert len(samples) >= 5
    seqs = []
    for payload, att, arrived in samples:
        assert len(att) == 33
        seq, stamp_ns, gid_len, gid = struct.unpack("<qqB16s", att)  # int64 seq, int64 ts, uint8 16, GID
        assert gid_len == 16 and abs(stamp_ns / 1e9 - arrived) < 5
        seqs.append(seq)
        msg = ts.deserialize_cdr(payload, "sensor_msgs/msg/CompressedImage")
        assert msg.format == "rgb8; jpeg compressed bgr8" and msg.header.frame_id == "cam_optical"
        assert 0 <= arrived - (msg.header.stamp.sec + msg.header.stamp.nanosec / 1e9) < 5  # capture time
        img = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (SIZE[1] * 2, SIZE[0] * 2, 3)  # upscaled at the robot
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    puts = {k for k, kind in tokens if kind == "PUT"}
    dels = {k for k, kind in tokens if kind == "DELETE"}
    node = [k for k in puts if "/NN/" in k]
    pub = [k for k in puts if "/MP/" in k]
    assert len(node) == 1 and node[0].startswith("@ros2_lv/3/") and node[0].endswith("/%/%/edgesr_receiver")
    assert len(pub) == 1 and f"/%robot%camera%image_sr%compressed/sensor_msgs::msg::dds_::CompressedImage_/" \
                              f"{type_hash}/" in pub[0]
    assert set(node + pub) <= dels  # undeclared at shutdown


def test_foxglove_websocket_channel():
    websockets = pytest.importorskip("websockets")
    from edgesr.outputs import open_output

    port = free_port()
    ws_port = free_port(socket.SOCK_STREAM)
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=True, threads=1)
    rx.attach(open_output(f"foxglove://127.0.0.1:{ws_port}/robot/image_sr"))
    pipe = device(port)
    threading.Thread(target=lambda: sum(1 for _ in rx.frames(timeout=10)), daemon=True).start()

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{ws_port}",
                                      subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]) as ws:
            channel = None
            while channel is None:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if m["op"] == "advertise":
                    channel = next(c for c in m["channels"] if c["topic"] == "/robot/image_sr")
            assert channel["schemaName"] == "foxglove.CompressedImage" and channel["encoding"] == "protobuf"
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": channel["id"]}]}))
            got = []
            while len(got) < 3:
                m = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(m, bytes) and m[0] == 1:  # MessageData: opcode, subscription id, log time, payload
                    sub_id, log_ns = struct.unpack_from("<IQ", m, 1)
                    got.append((sub_id, log_ns, m[13:]))
            return got

    try:
        got = asyncio.run(client())
    finally:
        pipe.stop()
        rx.close()
    for sub_id, log_ns, payload in got:
        assert sub_id == 7 and abs(log_ns / 1e9 - time.time()) < 30
        jpeg = payload[payload.index(b"\xff\xd8"):payload.rindex(b"\xff\xd9") + 2]  # the protobuf's data field
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (128, 192, 3)


@pytest.mark.slow
def test_mcap_recording_reads_back_as_ros2(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    port = free_port()
    out = tmp_path / "run.mcap"
    pipe = device(port)
    try:
        r = run_cli("edgesr", "receive", f"udp://127.0.0.1:{port}", "--record", str(out), "--count", "8",
                    "--all-frames", "--timeout", "10", timeout=120)
    finally:
        pipe.stop()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outputs"][f"mcap://{out}"]["published"] >= 1
    with open(out, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        msgs = list(reader.iter_decoded_messages())
    assert len(msgs) >= 1
    for schema, channel, message, decoded in msgs:
        assert schema.name == "sensor_msgs/msg/CompressedImage" and schema.encoding == "ros2msg"
        assert channel.message_encoding == "cdr" and channel.topic == "/edgesr/image_sr/compressed"
        img = cv2.imdecode(np.frombuffer(bytes(decoded.data), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (128, 192, 3) and decoded.header.frame_id == "camera"
        assert message.log_time == decoded.header.stamp.sec * 10**9 + decoded.header.stamp.nanosec


@pytest.mark.slow
def test_slow_output_drops_frames_and_never_stalls_reception():
    from edgesr.outputs import Output

    class Slow(Output):
        def publish(self, frame):
            time.sleep(0.5)

    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=False)
    slow = Slow("slow://")
    rx.attach(slow)
    pipe = device(port)
    try:
        t0 = time.monotonic()
        n = receive_for(rx, 3)
        el = time.monotonic() - t0
    finally:
        pipe.stop()
        rx.close()
    assert n / el > 6  # the 10 fps stream kept flowing
    assert slow.snapshot()["drops"] > 5 and slow.snapshot()["published"] <= 8


def test_output_errors_are_one_line():
    from edgesr.outputs import need, open_output

    with pytest.raises(ConfigError, match=r'needs the robot extra: pip install "edgesr\[robot\]"'):
        need("edgesr_no_such_module", "ros2://")
    for url, needle in [("ros2:///x?distro=noetic", "distro must be one of"), ("ros2:///x?domain=abc", "domain"),
                        ("foxglove://nohostport", "expected foxglove://HOST:PORT"), ("rtsp://x", "unsupported output"),
                        ("ros2:///x?quality=0", "quality must be 1..100"), ("ros2:///x?bogus=1", "unknown parameter")]:
        with pytest.raises(ConfigError, match=needle):
            open_output(url)
    r = run_cli("edgesr", "receive", f"udp://127.0.0.1:{free_port()}", "--timeout", "1",
                "--publish", f"ros2:///x?router=tcp/127.0.0.1:{free_port(socket.SOCK_STREAM)}")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "cannot reach the zenoh router" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_measured_link_chooses_by_measurement(tmp_path):
    """topology 'auto' on a budgeted UDP link: the device measures both modes on its own frames and sends the
    better one; the choice and the measured dB are in /state and /metrics, the robot gets the camera's size."""
    from edgesr import config as C
    from edgesr.health import prometheus
    from edgesr.service import build

    udp = free_port()
    results = {}
    for bitrate in (20_000, 4_000_000):
        p = tmp_path / f"link{bitrate}.toml"
        p.write_text(f"[source]\nurl = 'synthetic'\nwidth = 320\nheight = 240\nfps = 4\n"
                     f"[model]\nname = '{TINY}'\nthreads = 1\n"
                     f"[[sink]]\nurl = 'udp://127.0.0.1:{udp}'\nbitrate = {bitrate}\nfps = 4\ncodec = 'webp'\n"
                     "tile = 256\n")
        cfg = C.load(p)
        assert cfg.sinks[0].resolved_topology == "measured"
        rx = Receiver(f"udp://127.0.0.1:{udp}", upscale=True, model=str(TINY), threads=1)
        pipe = build(cfg).start()
        try:
            frames = []
            for f in rx.frames(timeout=15):
                frames.append(f)
                if len(frames) >= 24:  # 6 s: H.264 streams are scored after 5 s (SETTLE_S)
                    break
            link = pipe.snapshot()["sinks"][f"udp://127.0.0.1:{udp}"]["link"]
            text = prometheus(pipe, {})
        finally:
            pipe.stop()
            rx.close()
        assert all(f.image.shape == (240, 320, 3) for f in frames)  # HR as sent, or LR upscaled x2 at the robot
        assert link["measurements"] >= 1 and "edgesr_link_mode{" in text and "edgesr_link_measured_db" in text
        results[bitrate] = link
    thin, wide = results[20_000], results[4_000_000]
    assert thin["db"]["hr"] is None and all(v is not None for v in wide["db"].values())  # HR tiles: too big for 20k
    for link in (thin, wide):  # the mode in use is the best measured one (hysteresis: 1 dB around H.264)
        db = {m: v for m, v in link["db"].items() if v is not None}
        assert db[link["mode"]] >= max(db.values()) - 1.0, link
    assert wide["db"]["h264_hr"] > thin["db"]["h264_hr"]  # more bits, better picture: the scores are measured


@pytest.mark.slow
def test_the_topic_check_script_sees_the_topic_without_ros():
    """scripts/ros2_topic_check.py (docs/howto.md) as the router, edgesr receive publishing to it."""
    import subprocess
    import sys

    from edgesr.outputs import open_output

    endpoint = f"tcp/127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    check = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "ros2_topic_check.py"), "--router", endpoint,
                              "--seconds", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = free_port()
    pipe = device(port)
    try:
        time.sleep(1.5)  # the router is up
        rx = Receiver(f"udp://127.0.0.1:{port}", upscale=True, threads=1)
        rx.attach(open_output(f"ros2:///robot/camera/image_sr?router={endpoint}"))
        receive_for(rx, 4)
        rx.close()
        out, err = check.communicate(timeout=60)
    finally:
        pipe.stop()
    assert check.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["messages"] >= 3
