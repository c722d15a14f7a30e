"""Robot-side outputs: what `edgesr receive` republishes each frame to, chosen by URL (like the device's sinks):

    ros2:///robot/camera/image_sr?router=tcp/127.0.0.1:7447&domain=0&distro=jazzy&frame_id=camera&quality=80
        sensor_msgs/CompressedImage on <base>/compressed over rmw_zenoh's wire format (no ROS installation)
    foxglove://0.0.0.0:8765[/topic]     a Foxglove WebSocket server with a foxglove.CompressedImage channel
    mcap:///path/run.mcap (or --record run.mcap)   a ROS 2 MCAP recording (ros2msg + cdr)

Each output has its own latest-frame-wins slot and thread: a slow consumer drops frames (counted), never stalls
reception. Their libraries are the `robot` extra (`pip install "edgesr[robot]"`), imported only when used.
"""
from __future__ import annotations

from ..extras import need
from .base import Output, parse

__all__ = ["Output", "need", "open_output", "parse"]


def open_output(url: str) -> Output:
    """An output for ``url`` (not started); bad values are ConfigError naming them."""
    scheme = parse(url)[0]
    if scheme == "ros2":
        from .ros2 import ROS2Output
        return ROS2Output(url)
    if scheme == "foxglove":
        from .foxglove import FoxgloveOutput
        return FoxgloveOutput(url)
    from .mcap import MCAPOutput
    return MCAPOutput(url)
