"""Real-time stream: channels with epochs and sequences, bounded history, and the hub.

``history`` holds channel names and the History port (memory and Redis); ``hub`` the
fan-out to connections. Nothing here imports a web framework.
"""

from ludex.realtime.history import (
    BadChannel,
    Gap,
    History,
    MemoryHistory,
    Message,
    Position,
    RealtimeError,
    RedisHistory,
    Replay,
    check_channel,
)
from ludex.realtime.hub import (
    ChannelForbidden,
    Connection,
    Hub,
    Presence,
    Subscribed,
    decode_frame,
    encode_frame,
)

__all__ = [
    "BadChannel",
    "ChannelForbidden",
    "Connection",
    "Gap",
    "History",
    "Hub",
    "MemoryHistory",
    "Message",
    "Position",
    "Presence",
    "RealtimeError",
    "RedisHistory",
    "Replay",
    "Subscribed",
    "check_channel",
    "decode_frame",
    "encode_frame",
]
