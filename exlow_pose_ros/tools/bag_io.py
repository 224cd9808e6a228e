"""rosbag2 bags without rosbag2: writing serialized (CDR) messages with the `rosbags` package, reading bags back.

Writing (`BagWriter`, used by the recorder node): MCAP (default) or sqlite3 storage, rosbag2 format version 9.
Each connection carries its message definition and RIHS01 type hash, taken from the .msg files installed on
this machine (share/<package>/msg/<Name>.msg, found through the ament index, so exlow_pose_msgs and any
other package are covered), with rosbags' bundled ROS 2 definitions as the fallback. A bag therefore reads
back anywhere, including with `ros2 bag info/play`, without exlow_pose_msgs installed.

Reading (`read_bag`, `bag_summary`): any rosbag2 bag, ours or `ros2 bag record`'s, MCAP or sqlite3, through
`rosbags.highlevel.AnyReader` (type definitions come from the bag itself). Messages come back as the
**rclpy message classes** (e.g. `exlow_pose_msgs.msg.Skeleton2DArray`, `sensor_msgs.msg.Image`), decoded by
rclpy from the stored CDR bytes, whenever that class is importable here and its installed definition has the
bag's type hash. Otherwise (a type not installed, or recorded with a different definition) they come back as
rosbags dataclasses built from the bag's own definition, with the same field names (uint8[] fields are then
numpy arrays instead of array('B')). `rclpy_classes=False` always gives the rosbags dataclasses.
"""

from __future__ import annotations

import importlib
import re
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection, Nodetype, Qos
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_FILE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
HEADER_TYPE = "std_msgs/msg/Header"
TYPE_PATTERN = re.compile(r"^([A-Za-z_]\w*)/(?:msg/)?([A-Za-z_]\w*)$")


class BagError(ValueError):
    """A bag cannot be written or read; the message names the path, topic or type."""


def normalize_type(msgtype: str) -> str:
    """'pkg/msg/Name' (or the short 'pkg/Name') as 'pkg/msg/Name'; anything else is refused."""
    match = TYPE_PATTERN.match(msgtype.strip())
    if not match:
        raise BagError(f"message type {msgtype!r} is not of the form package/msg/Name")
    return f"{match[1]}/msg/{match[2]}"


def parse_topic_entry(entry: str) -> tuple[str, str | None]:
    """A `topics` entry: 'topic' (type found by discovery) or 'topic:package/msg/Name'."""
    topic, _, msgtype = entry.strip().partition(":")
    if not topic or not re.fullmatch(r"[~/A-Za-z0-9_{}]+", topic):
        raise BagError(f"topics entry {entry!r}: {topic!r} is not a topic name")
    return topic, (normalize_type(msgtype) if msgtype else None)


def _installed_msg_file(msgtype: str) -> Path | None:
    package, _, name = msgtype.split("/")
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        path = Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"
    except (ImportError, PackageNotFoundError, ValueError):
        return None
    return path if path.is_file() else None


def _referenced_types(fields: list) -> Iterator[str]:
    """Names of the message types a parse tree's fields use (directly or as array/sequence elements)."""
    for _name, (nodetype, detail) in fields:
        if nodetype == Nodetype.NAME:
            yield detail
        elif nodetype in (Nodetype.ARRAY, Nodetype.SEQUENCE) and detail[0][0] == Nodetype.NAME:
            yield detail[0][1]


class MessageTypes:
    """Definitions and type hashes of message types, from this machine's installed .msg files."""

    def __init__(self) -> None:
        self.typestore = get_typestore(Stores.EMPTY)
        self._bundled = get_typestore(Stores.LATEST)

    def ensure(self, msgtype: str) -> None:
        """Register `msgtype` and every type it uses."""
        found: dict[str, Any] = {}
        todo = [msgtype]
        while todo:
            name = todo.pop()
            if name in found or name in self.typestore.fielddefs:
                continue
            path = _installed_msg_file(name)
            try:
                if path is not None:
                    found.update(get_types_from_msg(path.read_text(), name))
                elif name in self._bundled.fielddefs:
                    found[name] = self._bundled.fielddefs[name]
                else:
                    raise BagError(f"no definition of message type {name!r}: neither share/"
                                   f"{name.split('/')[0]}/msg/{name.split('/')[2]}.msg nor a standard ROS 2 type")
            except (TypesysError, OSError) as error:
                raise BagError(f"cannot read the definition of {name!r} ({path}): {error}") from None
            todo.extend(_referenced_types(found[name][1]))
        try:
            self.typestore.register(found)
        except TypesysError as error:
            raise BagError(f"conflicting definitions while registering {msgtype!r}: {error}") from None

    def definition(self, msgtype: str) -> tuple[str, str]:
        """(message definition text as rosbag2 stores it, RIHS01 type hash)."""
        self.ensure(msgtype)
        msgdef, _ = self.typestore.generate_msgdef(msgtype, ros_version=2)
        return msgdef, self.typestore.hash_rihs01(msgtype)

    def has_header(self, msgtype: str) -> bool:
        """Whether the first field is a std_msgs/Header (so its stamp sits at a fixed place in the CDR)."""
        self.ensure(msgtype)
        fields = self.typestore.fielddefs[msgtype][1]
        return bool(fields) and fields[0][1] == (Nodetype.NAME, HEADER_TYPE)


def cdr_header(data: bytes | memoryview) -> tuple[int, int, str]:
    """(sec, nanosec, frame_id) of the std_msgs/Header that a serialized message starts with: right after the
    4-byte encapsulation header come int32 sec, uint32 nanosec and the frame_id string (uint32 length with
    its NUL, then the bytes), all 4-byte aligned in both plain CDR and XCDR2. Values are returned as sent,
    whether or not they make a valid time."""
    if len(data) < 16:
        raise BagError(f"{len(data)} bytes are too few for a message with a header")
    kind = bytes(data[:2])
    if kind in (b"\x00\x01", b"\x00\x07"):  # CDR_LE, CDR2_LE (ROS messages are final structs)
        order = "<"
    elif kind in (b"\x00\x00", b"\x00\x06"):  # CDR_BE, CDR2_BE
        order = ">"
    else:
        raise BagError(f"unsupported CDR encapsulation {kind.hex()}")
    sec, nanosec, length = struct.unpack_from(f"{order}iII", data, 4)
    if length < 1 or 16 + length > len(data):
        raise BagError(f"malformed header: frame_id length {length} in a {len(data)}-byte message")
    frame_id = bytes(data[16:16 + length - 1]).decode("utf-8", errors="replace")
    return sec, nanosec, frame_id


def _looks_like_bag(path: Path) -> bool:
    """Only what a bag directory holds: metadata.yaml and storage files (so overwrite never deletes
    anything else)."""
    names = list(path.iterdir())
    return all(p.is_file() and (p.name == "metadata.yaml" or p.suffix in BAG_FILE_SUFFIXES
                                or p.name.endswith((".db3-shm", ".db3-wal"))) for p in names)


class BagWriter:
    """One rosbag2 bag being written: connections added as topics appear, CDR bytes written as received."""

    def __init__(self, path: str | Path, storage: str = "mcap", overwrite: bool = False,
                 types: MessageTypes | None = None) -> None:
        self.path = Path(path).expanduser().absolute()
        if storage not in STORAGES:
            raise BagError(f"storage {storage!r} must be one of {list(STORAGES)}")
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise BagError(f"output {str(self.path)!r} exists already; choose another path or set "
                               "overwrite:=true to replace it")
            if not self.path.is_dir() or self.path.is_symlink() or not _looks_like_bag(self.path):
                raise BagError(f"output {str(self.path)!r} exists and is not a bag directory; not replacing it "
                               "even with overwrite:=true")
            shutil.rmtree(self.path)
        if not self.path.parent.is_dir():
            raise BagError(f"output {str(self.path)!r}: the folder {str(self.path.parent)!r} does not exist")
        self.types = types or MessageTypes()
        self._writer: Writer | None = Writer(self.path, version=Writer.VERSION_LATEST,
                                             storage_plugin=STORAGES[storage])
        try:
            self._writer.open()
        except (WriterError, OSError) as error:
            raise BagError(f"cannot create bag {str(self.path)!r}: {error}") from None
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def add_topic(self, topic: str, msgtype: str, offered_qos: Iterable[Qos] = ()) -> None:
        """Register `topic` (fully qualified) with its type's definition and the publishers' QoS."""
        if self._writer is None:
            raise BagError(f"bag {self.path} is closed")
        msgdef, rihs01 = self.types.definition(msgtype)
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, msgdef=msgdef, rihs01=rihs01, offered_qos_profiles=list(offered_qos))
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        if self._writer is None:
            raise BagError(f"bag {self.path} is closed")
        self._writer.write(self._connections[topic], timestamp_ns, data)
        self.counts[topic] += 1
        self.first_ns = timestamp_ns if self.first_ns is None else min(self.first_ns, timestamp_ns)
        self.last_ns = timestamp_ns if self.last_ns is None else max(self.last_ns, timestamp_ns)

    def close(self) -> None:
        """Write the index, summary and metadata.yaml; safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


def _rclpy_class(msgtype: str) -> type | None:
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def _decoder(connection: Connection, reader: AnyReader, types: MessageTypes, rclpy_classes: bool
             ) -> Callable[[bytes], object]:
    message_class = _rclpy_class(connection.msgtype) if rclpy_classes else None
    if message_class is not None:
        try:
            installed_hash = types.definition(connection.msgtype)[1]
        except BagError:
            installed_hash = None
        if not connection.digest or connection.digest == installed_hash:
            from rclpy.serialization import deserialize_message

            return lambda raw: deserialize_message(bytes(raw), message_class)
    return lambda raw: reader.deserialize(raw, connection.msgtype)


def _open_reader(path: str | Path) -> AnyReader:
    """An opened AnyReader (the caller closes it). Bags without embedded definitions (before Iron) are read
    with rosbags' bundled ROS 2 types."""
    bag = Path(path).expanduser()
    if not bag.exists():
        raise FileNotFoundError(f"bag {str(bag)!r} does not exist")
    try:
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
    except (AnyReaderError, ReaderError, TypesysError, OSError) as error:
        raise BagError(f"cannot read bag {str(bag)!r}: {error}") from None
    return reader


def read_bag(path: str | Path, topics: Iterable[str] | None = None, *, rclpy_classes: bool = True
             ) -> Iterator[tuple[str, int, object]]:
    """(topic, timestamp ns, message) for every message of the bag at `path` (a rosbag2 directory, or one
    .mcap/.db3 file), in timestamp order; only `topics` when given. See the module text for the message
    classes."""
    wanted = None if topics is None else set(topics)
    reader = _open_reader(path)
    try:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not connections:  # AnyReader.messages() reads every connection when given none
            return
        types = MessageTypes()
        decoders = {c.id: _decoder(c, reader, types, rclpy_classes) for c in connections}
        for connection, timestamp, raw in reader.messages(connections=connections):
            yield connection.topic, timestamp, decoders[connection.id](raw)
    finally:
        reader.close()


def bag_summary(path: str | Path) -> dict[str, Any]:
    """{'path', 'storage', 'topics': {topic: {'type', 'count'}}, 'message_count', 'start_ns', 'end_ns',
    'duration_s'}; start/end are the first and last message timestamps (None for an empty bag)."""
    bag = Path(path).expanduser()
    reader = _open_reader(bag)
    try:
        files = [bag] if bag.is_file() else sorted(bag.iterdir())
        storages = sorted({BAG_FILE_SUFFIXES[p.suffix] for p in files if p.suffix in BAG_FILE_SUFFIXES})
        topics = {name: {"type": info.msgtype, "count": info.msgcount} for name, info in reader.topics.items()}
        count = reader.message_count
        start = reader.start_time if count else None
        end = reader.end_time - 1 if count else None  # rosbags' end_time is one past the last message
    finally:
        reader.close()
    return {
        "path": str(bag),
        "storage": storages[0] if len(storages) == 1 else ",".join(storages),
        "topics": topics,
        "message_count": count,
        "start_ns": start,
        "end_ns": end,
        "duration_s": (end - start) / 1e9 if count else 0.0,
    }
