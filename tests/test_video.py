"""H.264 inside edgesr's protocol (edgesr.video): real libx264/FFmpeg through PyAV on the shared camera clip."""
from __future__ import annotations

import random
import struct
import sys
import zlib

import numpy as np
import pytest

from edgesr.assembly import FrameAssembler, Limits
from edgesr.encoder import StreamEncoder
from edgesr.errors import ConfigError
from edgesr.fec import Recovery, is_parity
from edgesr.metrics import psnr_y
from edgesr.modechoice import MODES
from edgesr.protocol import H264, decode_packet
from edgesr.transports.base import OutFrame
from edgesr.video import H264Stream, encode_unit

from conftest import DATA, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import video_study  # noqa: E402

VIDEO = DATA / "video" / "one-by-one-person-detection.mp4"


@pytest.fixture(scope="module")
def clip():
    return video_study.video_frames(VIDEO, 2.0, 24)


def stream(frames, fps=2.0, **kw):
    sink = StreamEncoder(topology="source", codec="h264", fps=fps, mtu=1200, **kw)
    return video_study.sink_stream(sink, frames, fps, 1)


def deliver(packets, drop=lambda k, i, raw: False, limits=None):
    """Frames at the robot: packets through FEC recovery and the assembler, dropping those ``drop`` says."""
    rec, out = Recovery(), []
    asm = FrameAssembler(limits=limits, recovery=rec, hold_s=10.0)  # time here counts frames
    for k, pk in enumerate(packets):
        for i, raw in enumerate(pk or []):  # None: a frame that did not fit the budget
            if drop(k, i, raw):
                continue
            for p in rec.parity(raw) if is_parity(raw) else [raw]:
                rec.data(p)
                out += asm.add(decode_packet(p), now=k)
    return out + asm.expire(now=len(packets) + 10.0, max_age=1.0), asm  # the last frames, complete or not


@pytest.mark.slow
def test_h264_stream_fits_the_link_and_beats_intra_tiles(clip):
    packets = stream(clip, bitrate=57600)
    kbps = sum(len(p) for pk in packets for p in pk) * 8 * 2.0 / len(clip) / 1000
    assert kbps <= 57.6  # every byte: headers, CRC, H.264
    assert all(decode_packet(p).codec == H264 for pk in packets for p in pk)
    frames, asm = deliver(packets)
    assert [f.seq for f in frames] == list(range(1, len(clip) + 1)) and asm.stats["complete"] == len(clip)
    assert {(f.codec, f.lr) for f in frames} == {("h264", False)}  # the mode, as the robot sees it
    h264 = np.mean([psnr_y(f.image, hr, 4) for f, hr in zip(frames, clip)])
    tiles, _ = deliver(video_study.encode_stream(clip, 57600 / 8 / 2.0, "webp", 1024, False))  # one whole-frame tile
    intra = np.mean([psnr_y(f.image, clip[f.seq - 1], 4) for f in tiles])
    assert h264 > intra + 2  # temporal prediction on a static camera (intra-only tiles: ~34 dB here)


def test_a_lost_packet_costs_one_slice_and_fec_rebuilds_it(clip):
    frames = clip[:8]
    packets = stream(frames, bitrate=57600)
    k = next(k for k in range(3, 8) if len(packets[k]) >= 3)
    def lost(j, i, raw):
        return j == k and i == 1  # one packet (one slice) of a frame of several
    plain, asm = deliver(packets, lost)
    assert asm.stats["partial"] == 1 and plain[k].missing_tiles == [1]
    # the other slices decode, the lost one is concealed from the previous picture: close to the true frame
    assert not np.array_equal(plain[k].image, plain[k - 1].image)
    assert psnr_y(plain[k].image, frames[k], 4) > 33  # not a broken picture
    held, _ = deliver(packets, lambda j, i, raw: j == k and i == 0)  # the first slice lost: the picture is held
    assert held[k].missing_tiles == [0] and np.array_equal(held[k].image, held[k - 1].image)
    protected, asm = deliver(stream(frames, bitrate=57600, fec=0.25), lost)
    assert asm.stats["partial"] == 0 and len(protected) == 8


def test_slices_fit_packets(clip):
    from edgesr.video import nal_chunks

    unit = H264Stream(768, 432, 2.0, 400000, mtu=600).encode(clip[0])
    chunks = nal_chunks(unit, 600 - 46)
    assert b"".join(chunks) == unit and len(chunks) > 3
    def nal_type(c):
        return c[c.index(b"\x00\x01") + 2] & 31
    # every chunk fits a packet, except one NAL that is not a slice (x264's 0.7 kB version SEI, first unit only)
    assert all(len(c) <= 600 - 46 or nal_type(c) not in (1, 5) for c in chunks)
    assert all(c.startswith(b"\x00\x00\x01") or c.startswith(b"\x00\x00\x00\x01") for c in chunks)


def test_a_robot_joining_mid_stream_gets_pictures_after_the_refresh(clip):
    st = H264Stream(768, 432, 2.0, 55000, refresh_s=2.0)  # SPS/PPS + a sweep every 4 frames
    packets = [encode_unit(st.encode(hr), (768, 432), k + 1, 0) for k, hr in enumerate(clip)]
    frames, asm = deliver(packets, drop=lambda k, i, raw: k < 2)  # missed the first units (IDR, SPS/PPS)
    assert asm.stats["no_picture"] >= 2  # nothing shown (no black frames) until the decoder has a picture
    assert frames and all(not f.missing_tiles for f in frames) and frames[-1].seq == len(clip)
    assert min(psnr_y(f.image, clip[f.seq - 1], 4) for f in frames) > 30
    assert frames[0].seq <= 2 + 2 * 4 + 1  # within two refresh periods


def test_hostile_h264_units_are_dropped_and_counted(clip):
    small = H264Stream(64, 48, 2.0, 50000)
    unit = small.encode(np.ascontiguousarray(clip[0][:48, :64]))
    # header says 32x24, the SPS says 64x48: checked after decoding, dropped
    _, asm = deliver([encode_unit(unit, (32, 24), 1, 0)])
    assert asm.stats["bad_tiles"] == 1 and "64x48" in asm.last_error
    # the decoder itself is bounded: SPS of 64x48 over a 1,000-pixel limit is never allocated
    _, asm = deliver([encode_unit(unit, (64, 48), 1, 0)], limits=Limits(max_frame_pixels=64 * 48, max_side=64))
    assert asm.stats["complete"] == 1
    big = H264Stream(1280, 720, 2.0, 50000).encode(np.zeros((720, 1280, 3), np.uint8))
    _, asm = deliver([encode_unit(big, (20, 20), 1, 0)], limits=Limits(max_video_pixels=400))
    assert asm.stats["bad_tiles"] == 1 and "does not decode" in asm.last_error  # FFmpeg refused it before allocating
    # H.264 pictures and decoders are bounded tighter than tiles (a decoder keeps up to 16 reference pictures)
    _, asm = deliver([encode_unit(unit, (1920, 1200), 1, 0)])
    assert asm.stats["over_limit"] >= 1 and asm.stats["frames"] == 0  # every packet of it dropped
    _, asm = deliver([encode_unit(unit, (64, 48), k + 1, 0, stream=k) for k in range(3)])
    assert asm.stats["complete"] == 2 and asm.stats["over_limit"] == 1  # a third H.264 stream: no decoder
    # structurally valid packets (right CRC) with random H.264 payloads: never an exception
    rnd = random.Random(7)
    asm = FrameAssembler()
    for seq in range(1, 200):
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        if rnd.random() < 0.5:
            body = b"\x00\x00\x00\x01" + bytes([rnd.choice([0x67, 0x68, 0x65, 0x41])]) + body
        raw = encode_unit(body, (rnd.randint(16, 640), rnd.randint(16, 480)), seq, 0)[0]
        asm.add(decode_packet(raw), now=seq)
    assert asm.stats["frames"] + asm.stats["no_picture"] >= 190 and asm.stats["bad_tiles"] > 0


def test_the_header_field_of_an_h264_packet_is_checked_like_any_other():
    raw = bytearray(encode_unit(b"\x00\x00\x00\x01\x67", (64, 48), 1, 0)[0])
    raw[34] = 9  # the codec byte: an unknown id
    body = bytes(raw[:-4])
    with pytest.raises(Exception, match="unknown codec"):
        decode_packet(body + struct.pack("!I", zlib.crc32(body)))


def test_measured_topology_scores_h264_and_picks_the_best_mode(clip):
    from edgesr.engine import Engine

    eng = Engine(None, threads=1)  # the shipped default x4 model
    sink = StreamEncoder(topology="measured", codec="webp", tile=256, bitrate=57600, fps=2.0, mtu=1200,
                         measure_with=eng, modes=MODES)
    chooser = sink.chooser
    sent = video_study.sink_stream(sink, clip[:12], 2.0, 4)
    # before the first measurement (10 frames: SETTLE_FRAMES) H.264 HR is sent from its first unit: the robot sees
    # frame 1
    first = decode_packet(sent[0][0])
    assert first.codec == H264 and (first.frame_w, first.frame_h) == (768, 432)
    db = chooser.state()["db"]
    assert set(db) == set(MODES) and all(db[m] is not None for m in ("h264_hr", "h264_lr", "lr"))
    scored = {m: v for m, v in db.items() if v is not None}
    assert chooser.mode == max(scored, key=scored.get) or scored[chooser.mode] >= max(scored.values()) - 0.3
    assert chooser.stats["video_ms"] > 0


def test_h264_config_is_checked(tmp_path):
    from edgesr.config import load

    base = '[source]\nurl = "synthetic"\n[[sink]]\ncodec = "h264"\n'
    ok = tmp_path / "ok.toml"
    ok.write_text(base + 'url = "udp://127.0.0.1:5600"\ntopology = "receiver"\n')
    assert load(ok).sinks[0].codec == "h264"
    bad = tmp_path / "bad.toml"
    bad.write_text(base + 'url = "http://127.0.0.1:8080"\n')
    with pytest.raises(ConfigError, match="MJPEG"):
        load(bad)
    with pytest.raises(ConfigError, match="even frame size"):
        H264Stream(65, 48, 2.0, 50000)


def over_udp(packets, keep) -> tuple[int, dict]:
    """``packets`` (those ``keep(n)`` says) sent to a real Receiver on a loopback UDP socket: (frames, summary)."""
    import socket
    import time

    from edgesr.linksim import free_port
    from edgesr.receiver import Receiver

    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=False, latest_only=False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n, p in enumerate(packets):
            if keep(n):
                tx.sendto(p, ("127.0.0.1", port))
                time.sleep(0.002)
        return sum(1 for _ in rx.frames(timeout=1.0)), rx.summary()
    finally:
        tx.close()
        rx.close()


def test_the_receiver_measures_packet_loss_and_suggests_fec(clip):
    from edgesr.fec import parity_share

    packets = stream(clip, bitrate=115200)
    seen, dropped = [0], [0]

    def every_10th(k, i, raw):
        seen[0] += 1
        drop = seen[0] % 10 == 0 and i > 0  # never a frame's first packet: no frame is lost whole
        dropped[0] += drop
        return drop

    _, asm = deliver(packets, every_10th)
    assert asm.stats["packets_expected"] - asm.stats["packets_received"] == dropped[0] > 0
    loss = dropped[0] / asm.stats["packets_expected"]
    assert 0.03 < loss < 0.12 and parity_share(loss) == pytest.approx(5 * loss)


@pytest.mark.slow
def test_the_receiver_suggests_no_parity_for_small_frames(clip):
    """A real Receiver on a loopback UDP socket, every 10th packet lost: on a wide stream it suggests 5x the loss
    as `fec`, on a thin one (under FEC_MIN_FRAME link bytes a frame) none."""
    from edgesr.fec import FEC_MIN_FRAME

    for bitrate, fps, wide in ((115200, 2.0, True), (19200, 5.0, False)):
        sent = [p for pk in stream(clip[:16], fps=fps, bitrate=bitrate) for p in pk]
        frames, s = over_udp(sent, lambda n: n % 10 != 9)
        assert frames >= 8 and 0.03 < s["packet_loss"] < 0.2, s
        assert (s["bytes"] / frames >= FEC_MIN_FRAME) == wide
        assert s["suggested_fec"] == (pytest.approx(5 * s["packet_loss"], abs=0.01) if wide else 0.0), s


@pytest.mark.slow
def test_units_fec_rebuilt_count_once_in_the_loss_estimate(clip):
    """A thin stream with parity (one packet a frame), every 6th data packet lost: each is a unit lost whole, most
    are rebuilt. The receiver's loss is what the link lost, not the losses plus the rebuilt units again."""
    from edgesr.fec import is_parity

    sent = [p for pk in stream(clip[:20], bitrate=19200, fec=0.25) for p in pk]
    data = [n for n, p in enumerate(sent) if not is_parity(p)]
    lost = set(data[3:-2:6])  # not the last units: a unit lost whole shows by the gap to the next one
    frames, s = over_udp(sent, lambda n: n not in lost)
    assert frames >= 16 and s["fec_recovered"] >= 2, s
    assert s["packet_loss"] == pytest.approx(len(lost) / len(data), abs=0.02), s


def test_a_hardware_encoder_that_does_not_open_falls_back_to_libx264(clip, caplog):
    from pathlib import Path

    st = H264Stream(64, 48, 2.0, 50000, encoder="h264_v4l2m2m", local=True)
    st.encode(np.ascontiguousarray(clip[0][:48, :64]))
    assert st.recon is not None and st.recon.shape == (48, 64, 3)
    if not Path("/dev/video11").exists():  # no V4L2 codec device here: the fallback, with one warning
        assert st.name == "libx264" and "did not open" in caplog.text


def test_a_robot_without_pyav_says_so_once(clip, monkeypatch, caplog):
    import edgesr.video
    from edgesr.linksim import free_port
    from edgesr.receiver import Receiver

    packets = stream(clip[:3], bitrate=57600)

    def missing():
        raise ConfigError('H.264 needs PyAV: pip install "edgesr[video]"')

    monkeypatch.setattr(edgesr.video, "_av", missing)
    rx = Receiver(f"udp://127.0.0.1:{free_port()}", upscale=False)
    try:
        for pk in packets:
            for raw in pk:
                rx.depacketizer.feed(raw, 0.0)
    finally:
        rx.close()
    assert rx.assembler.stats["bad_tiles"] >= 2 and caplog.text.count("needs PyAV") == 1


@pytest.mark.slow
def test_a_tcp_client_that_connects_late_gets_a_picture_at_once():
    """TCP knows when a robot connects: the device sends an IDR next, so a second robot that connects while the
    stream runs does not wait for the refresh sweep (10 s here)."""
    import socket
    import threading
    import time

    from edgesr.linksim import free_port
    from edgesr.pipeline import Pipeline
    from edgesr.receiver import Receiver
    from edgesr.sources import SyntheticSource
    from edgesr.transports import open_sink

    port = free_port(socket.SOCK_STREAM)
    sink = open_sink(f"tcp://127.0.0.1:{port}", topology="receiver", codec="h264", fps=10.0)
    pipe = Pipeline(SyntheticSource((320, 240), 10.0), None, [sink], (320, 240), scale=1).start()
    first = Receiver(f"tcp://127.0.0.1:{port}", upscale=False)
    got_first = []
    reader = threading.Thread(target=lambda: got_first.extend(f.seq for f in first.frames(timeout=6)), daemon=True)
    reader.start()
    try:
        time.sleep(2.5)  # the stream runs for the first robot: its IDR is long gone
        late = Receiver(f"tcp://127.0.0.1:{port}", upscale=False)
        t0, frames = time.monotonic(), []
        for f in late.frames(timeout=8):
            frames.append(f)
            if len(frames) >= 3:
                break
        waited = time.monotonic() - t0
        late.close()
    finally:
        pipe.stop()
        first.close()
    assert len(got_first) > 10 and len(frames) == 3 and waited < 3.0 and frames[0].codec == "h264"


def test_fec_across_frames_rebuilds_a_unit_lost_whole_and_the_stream_stays_exact(clip):
    """On a thin link a frame is one packet: parity spans frames (edgesr.fec.Protector), and the robot's decoder
    waits for the rebuilt unit instead of going on without it (which leaves an error until the refresh sweep)."""
    frames = clip[:16]
    clean, _ = deliver(stream(frames, bitrate=19200, fec=0.25))
    packets = stream(frames, bitrate=19200, fec=0.25)
    k = next(k for k in range(4, 12) if len(packets[k]) == 1)  # a one-packet frame, without parity of its own
    def whole(j, i, raw):
        return j == k and i == 0  # the frame is lost whole: the robot never hears of it
    got, asm = deliver(packets, whole)
    assert asm.stats["waited"] >= 1 and [f.seq for f in got] == [f.seq for f in clean if f.seq != k + 1]
    concealed = [f.seq for f in got if f.concealed]  # shown on time by the concealing twin while the unit waited
    assert concealed and concealed[0] == k + 2 and asm.stats["concealed"] == len(concealed)
    assert asm.stats["frames"] == len(got) == asm.stats["complete"] + asm.stats["partial"] + len(concealed)
    exact = {f.seq: f.image for f in clean}
    assert all(np.array_equal(f.image, exact[f.seq]) for f in got if not f.concealed)  # after it: bit-exact
    assert got[-1].seq == len(frames) and not got[-1].concealed
    plain = stream(frames, bitrate=19200)  # the same loss without FEC: the frames after it carry the error
    ref, asm = deliver(plain)
    # no parity, no twin: a clean stream is decoded once
    assert not any(h.twin for h in asm.held.values()) and asm.stats["concealed"] == 0
    lost, _ = deliver(plain, whole)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(lost[k:], ref[k + 1:]))


def test_the_robot_waits_only_while_parity_can_still_help(clip):
    frames = clip[:16]
    packets = stream(frames, bitrate=19200, fec=0.25)
    assert sum(1 for pk in packets for p in pk if is_parity(p)) < sum(len(pk) for pk in packets) * 0.45
    # units of one parity block lost whole, more packets than its parity rebuilds: the robot goes on (in order)
    ends = [k for k, pk in enumerate(packets) if any(is_parity(p) for p in pk)]  # frames that close a block
    start, end = next((a + 1, b) for a, b in zip(ends, ends[1:]) if b - a >= 3 and a >= 2)
    parity = sum(map(is_parity, packets[end]))
    ks, n = [], 0
    for k in range(start, end + 1):
        if n <= parity:
            ks.append(k)
            n += sum(not is_parity(p) for p in packets[k])
    assert n > parity and len(ks) < end + 1 - start + 1
    got, asm = deliver(packets, lambda j, i, raw: j in ks and not is_parity(raw))
    assert [f.seq for f in got] == [s for s in range(1, 17) if s - 1 not in ks]  # every other frame, in order
    # frames the device never sent (the sink skipped them: seq gaps) are not waited for: each frame is shown
    # when its own packets are here
    sink = StreamEncoder(topology="source", codec="h264", fps=2.0, mtu=1200, bitrate=19200, fec=0.25)
    rec = Recovery()
    asm = FrameAssembler(recovery=rec, hold_s=10.0)
    for seq in (1, 2, 3, 5, 6, 9, 10, 11, 14):
        shown = []
        for raw in sink.packets(OutFrame(seq, int(seq * 5e5), frames[seq], None, 1, 0.0)):
            for p in rec.parity(raw) if is_parity(raw) else [raw]:
                rec.data(p)
                shown += asm.add(decode_packet(p), now=seq)
        assert [f.seq for f in shown] == [seq]


def test_the_rate_controller_reserves_what_parity_weighs(clip):
    """The H.264 budget under FEC is planned with edgesr.fec.parity_ratio: on real streams (a thin link, one packet
    a frame, and a wider one, 700-byte packets) it predicts the parity the Protector sends within 20 % (a short
    clip: its first unit is an IDR, whose block gets a packet more)."""
    from edgesr.fec import block_frames, parity_ratio

    for bitrate, fps in ((19200, 2.0), (57600, 2.0)):
        sink = StreamEncoder(topology="source", codec="h264", fps=fps, mtu=1200, bitrate=bitrate, fec=0.25)
        sent = video_study.sink_stream(sink, clip, fps, 1)
        data = [len(p) for pk in sent for p in pk if not is_parity(p)]
        parity = sum(len(p) for pk in sent for p in pk if is_parity(p))
        predicted = parity_ratio(0.25, sum(data) / len(sent), sink.video_mtu, block_frames(fps))
        assert abs(parity / sum(data) - predicted) < 0.2 * predicted, (bitrate, parity / sum(data), predicted)


def test_hostile_gaps_and_parity_never_hold_more_than_a_block(clip):
    """Structurally valid H.264 packets (right CRC) with random sequence numbers, gaps and parity claims: the
    units that wait for FEC stay bounded and are all released."""
    from edgesr.fec import MAX_SPAN, protect

    rnd = random.Random(11)
    small = H264Stream(64, 48, 2.0, 50000)
    units = [small.encode(np.ascontiguousarray(f[:48, :64])) for f in clip[:12]]
    rec = Recovery()
    asm = FrameAssembler(recovery=rec, hold_s=3.0)
    for t in range(400):
        seq = rnd.choice([t, t + rnd.randint(-20, 20), rnd.getrandbits(32)]) & 0xFFFFFFFF
        pk = encode_unit(units[t % len(units)], (64, 48), seq, 0, gap=rnd.randint(0, 70000), mtu=rnd.randint(120, 400))
        if rnd.random() < 0.3:
            pk = protect(pk, rnd.randint(1, 3)) + pk[:rnd.randint(0, len(pk))]
        for raw in pk:
            if rnd.random() < 0.2:
                continue
            for p in rec.parity(raw) if is_parity(raw) else [raw]:
                rec.data(p)
                asm.add(decode_packet(p), now=t * 0.1)
        assert sum(len(h.units) for h in asm.held.values()) <= 2 * (MAX_SPAN + 2)
        asm.expire(now=t * 0.1, max_age=0.5)
    asm.expire(now=1e6, max_age=0.5)
    assert not any(h.units for h in asm.held.values()) and rec.stats["parity"] > 0 and asm.stats["waited"] > 0


def test_the_robot_upscales_h264_lr_with_the_model_trained_for_it(clip):
    """LR frames that came as H.264 are upscaled with the shipped model fine-tuned on H.264-coded LR (unless the
    robot names a model)."""
    from edgesr.linksim import free_port
    from edgesr.modechoice import downscale
    from edgesr.modelcard import CODEC_DEFAULTS, DEFAULTS, MODELS_DIR, load_card
    from edgesr.receiver import Receiver

    sink = StreamEncoder(topology="receiver", codec="h264", fps=2.0, mtu=1200, bitrate=19200)
    packets = [raw for k in range(3) for raw in sink.packets(OutFrame(k + 1, k * 500000, downscale(clip[k], 4), None, 4,
                                                                      0.0))]
    for model, want in ((None, CODEC_DEFAULTS[("h264", 4)]), ("efdn_w16b2_x4_int8", DEFAULTS[4])):
        rx = Receiver(f"udp://127.0.0.1:{free_port()}", model=model)
        try:
            got = [rx.finish(f) for raw in packets for f in rx.depacketizer.feed(raw, 0.0)]
        finally:
            rx.close()
        stems = [e.path.stem for e in rx.engines.values()]
        twin = (load_card(MODELS_DIR / f"{want}.tflite").twin or "").removesuffix(".tflite")
        assert len(stems) == 1 and stems[0] in (want, twin) and len(got) == 3  # or its faster exact twin
        assert got[-1].image.shape == clip[0].shape and got[-1].codec == "h264" and got[-1].scale == 4


def test_a_unit_lost_for_good_raises_refresh_requests_until_an_idr(clip):
    """No FEC: a unit lost whole breaks the robot's picture; the assembler asks for a refresh once a second (the
    request may be lost too) until a whole IDR arrives, which clears it."""
    from edgesr.video import has_idr

    sink = StreamEncoder(topology="source", codec="h264", fps=2.0, mtu=1200, bitrate=115200)
    units = [video_study.sink_stream(sink, clip[:6], 2.0, 1)]
    asm = FrameAssembler()
    for k, pk in enumerate(units[0]):
        if k != 3:  # unit 4 (seq 4) never arrives
            for raw in pk:
                asm.add(decode_packet(raw), now=k)
    assert asm.stats["units_broken"] == 1 and list(asm.broken.streams) == [0]
    assert asm.broken.due(6.0) == [(0, 6)] and asm.broken.due(6.5) == [] and asm.broken.due(7.0) == [(0, 6)]
    sink.key_next()  # what a request does on the device
    idr = sink.packets(OutFrame(7, int(3.5e6), clip[6], None, 1, 0.0))
    assert has_idr(b"".join(decode_packet(p).payload for p in idr))
    for raw in idr:
        asm.add(decode_packet(raw), now=8)
    assert not asm.broken.streams and asm.broken.due(9.0) == []


def test_the_device_honours_refresh_requests_where_an_idr_pays(clip):
    """StreamEncoder.on_request: an IDR next, at most one a second, none on a link thinner than REFRESH_MIN_FRAME
    bytes a frame (there an IDR costs more than the loss); garbage and other streams' requests are not obeyed."""
    from edgesr.backchannel import REFRESH_MIN_FRAME, encode_request
    from edgesr.video import has_idr

    def unit_after(sink, raw, now):
        sink.on_request(raw, now=now)
        return b"".join(decode_packet(p).payload for p in sink.packets(OutFrame(9, 0, clip[1], None, 1, 0.0)))

    for bitrate, fps, obeys in ((57600, 2.0, True), (19200, 5.0, False)):
        sink = StreamEncoder(topology="source", codec="h264", fps=fps, mtu=1200, bitrate=bitrate)
        assert (bitrate / 8 / fps >= REFRESH_MIN_FRAME) == obeys
        sink.packets(OutFrame(1, 0, clip[0], None, 1, 0.0))
        assert has_idr(unit_after(sink, encode_request(0, 1), 10.0)) == obeys
        assert sink.state()["refresh_requests"] == 1 and sink.state()["refreshes"] == int(obeys)
    assert not has_idr(unit_after(sink, encode_request(0, 1), 10.5))  # thin link
    sink = StreamEncoder(topology="source", codec="h264", fps=2.0, mtu=1200, bitrate=57600)
    sink.packets(OutFrame(1, 0, clip[0], None, 1, 0.0))
    assert has_idr(unit_after(sink, encode_request(0, 1), 10.0))
    assert not has_idr(unit_after(sink, encode_request(0, 9), 10.5))  # within a second of the last
    assert not has_idr(unit_after(sink, encode_request(0, 1), 12.0))  # lost before the last IDR: it healed that
    assert has_idr(unit_after(sink, encode_request(0, 9), 12.0)) and sink.state()["refreshes"] == 2
    wide = StreamEncoder(topology="source", codec="h264", fps=2.0, mtu=1200, bitrate=57600, key=b"k" * 32)
    wide.packets(OutFrame(1, 0, clip[0], None, 1, 0.0))
    assert not has_idr(unit_after(wide, encode_request(0, 1), 1.0))  # unsigned, while the link has a key
    assert not has_idr(unit_after(wide, encode_request(5, 1, b"k" * 32), 2.0))  # another stream's
    assert wide.state()["bad_requests"] == 1 and has_idr(unit_after(wide, encode_request(0, 1, b"k" * 32), 3.0))
    deaf = StreamEncoder(topology="source", codec="h264", fps=2.0, mtu=1200, bitrate=57600, feedback=False)
    deaf.packets(OutFrame(1, 0, clip[0], None, 1, 0.0))
    assert not has_idr(unit_after(deaf, encode_request(0, 1), 1.0)) and deaf.state()["refresh_requests"] == 1


@pytest.mark.slow
def test_the_robot_asks_for_a_refresh_over_a_lossy_serial_radio(clip):
    """Real pyserial over a simulated radio (pty, both directions lose 20 % of frames): the robot's requests reach
    the device, which sends IDRs; with feedback off it asks for nothing."""
    import threading
    import time

    from edgesr.linksim import PtyLink
    from edgesr.receiver import Receiver
    from edgesr.transports import open_sink

    for feedback in (True, False):
        link = PtyLink(bitrate=0, loss=0.2, seed=4).start()
        sink = open_sink(f"serial://{link.tx}?baud=115200", topology="source", codec="h264", fps=4.0,
                         bitrate=57600).start()
        rx = Receiver(f"serial://{link.rx}?baud=115200", upscale=False, latest_only=False, feedback=feedback)
        got = []
        t = threading.Thread(target=lambda: got.extend(rx.frames(timeout=10.0)))  # close() ends it sooner
        t.start()
        try:
            for k, img in enumerate(clip * 2):
                sink.submit(OutFrame(k + 1, int(time.time() * 1e6), img, None, 1, time.monotonic()))
                time.sleep(0.25)
            time.sleep(1.0)
        finally:
            rx.close()
            t.join(5)
            sink.close()
            link.close()
        assert got and link.stats["frames_dropped"] > 0
        if feedback:
            assert rx.stats["refresh_requests"] >= 1 and link.stats["back_frames"] == rx.stats["refresh_requests"]
            assert sink.state()["refreshes"] >= 1
        else:
            assert rx.stats["refresh_requests"] == 0 and sink.state()["refresh_requests"] == 0


@pytest.mark.slow
def test_refresh_requests_go_back_over_udp(clip):
    """Real UDP on loopback through a relay that loses every 7th datagram to the robot: the robot's requests go to
    where the stream's valid packets come from (the relay, not a spoofer sending garbage), which passes them back
    to the device's socket."""
    import select
    import socket
    import threading
    import time

    from edgesr.linksim import free_port
    from edgesr.receiver import Receiver
    from edgesr.transports import open_sink

    relay_in, relay_out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET,
                                                                                        socket.SOCK_DGRAM)
    relay_in.bind(("127.0.0.1", 0))
    rx_port, stop, device, n = free_port(), threading.Event(), [None], [0]

    def relay():
        while not stop.is_set():
            for s in select.select([relay_in, relay_out], [], [], 0.05)[0]:
                data, addr = s.recvfrom(65535)
                if s is relay_in:
                    device[0], n[0] = addr, n[0] + 1
                    if n[0] % 7:
                        relay_out.sendto(data, ("127.0.0.1", rx_port))
                    spoofer.sendto(b"ES" + bytes(60), ("127.0.0.1", rx_port))  # garbage after each datagram
                elif device[0]:
                    relay_in.sendto(data, device[0])  # robot -> device

    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # sends the robot garbage all along
    spoofer.setblocking(False)
    t = threading.Thread(target=relay, daemon=True)
    t.start()
    rx = Receiver(f"udp://127.0.0.1:{rx_port}", upscale=False, latest_only=False)
    sink = open_sink(f"udp://127.0.0.1:{relay_in.getsockname()[1]}", topology="source", codec="h264", fps=4.0,
                     bitrate=57600).start()
    got = []
    reader = threading.Thread(target=lambda: got.extend(rx.frames(timeout=10.0)))  # close() ends it sooner
    reader.start()
    try:
        for k, img in enumerate(clip):
            sink.submit(OutFrame(k + 1, int(time.time() * 1e6), img, None, 1, time.monotonic()))
            time.sleep(0.25)
        time.sleep(0.5)
        try:
            answered = spoofer.recv(100)  # the robot answers valid packets' source only
        except BlockingIOError:
            answered = None
    finally:
        rx.close()
        reader.join(5)
        sink.close()
        stop.set()
        t.join(2)
        relay_in.close()
        relay_out.close()
        spoofer.close()
    assert answered is None and rx.stats["bad_packets"] >= 20
    assert got and rx.stats["refresh_requests"] >= 1
    assert sink.state()["refresh_requests"] >= 1 and sink.state()["refreshes"] >= 1


@pytest.mark.slow
def test_a_flood_of_refresh_requests_costs_at_most_one_idr_a_second(clip):
    """Hostile back channel: 400 datagrams at the device's UDP socket (half garbage, half valid requests with newer
    and newer seqs): at most 64 are read a frame, garbage is counted, and one IDR a second is all it gets."""
    import socket
    import time

    from edgesr.backchannel import encode_request
    from edgesr.linksim import free_port
    from edgesr.transports import open_sink

    port = free_port()
    robot = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    robot.bind(("127.0.0.1", port))
    sink = open_sink(f"udp://127.0.0.1:{port}", topology="source", codec="h264", fps=4.0, bitrate=57600)
    sink.open()
    try:
        sink.send(OutFrame(1, 0, clip[0], None, 1, time.monotonic()))
        device = sink.sock.getsockname()
        for i in range(200):
            robot.sendto(bytes(random.Random(i).randbytes(14)), device)
            robot.sendto(encode_request(0, 1000 + i), device)
        t0 = time.monotonic()
        sink.send(OutFrame(2, 0, clip[1], None, 1, time.monotonic()))
        assert sink.state()["bad_requests"] + sink.state()["refresh_requests"] == 64  # a frame reads 64 at most
        for k in range(2, 8):
            sink.send(OutFrame(k + 1, 0, clip[k], None, 1, time.monotonic()))
        took = time.monotonic() - t0
    finally:
        sink.close()
        robot.close()
    assert sink.state()["bad_requests"] > 0 and sink.state()["refresh_requests"] > 0
    assert 64 < sink.state()["bad_requests"] + sink.state()["refresh_requests"] <= 400  # the rest (what the kernel
    #                                                                              buffered) over the next frames
    assert sink.state()["refreshes"] <= 1 + took
