"""An orjson transcoder with the library's tagging: UUID, datetime, Decimal, enums, tuples and
registered value types round-trip exactly, as `{"_type_": name, "_data_": ...}`.

orjson writes UUIDs and datetimes natively as plain strings, which would come back as `str`,
so values are tagged by one walk before `dumps` and untagged by one walk after `loads`. Both
walks return plain JSON types at once, which is nearly every field of a flat event.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import (
    DecimalAsStr,
    Transcoder,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic, resolve_topic

from ledger.bounds import InvalidRecord, storable

_PLAIN = frozenset((str, int, bool, type(None)))
# orjson writes NaN and infinities as `null`: a float is plain only if finite (see `_tag`).
_PLAIN_DECODED = _PLAIN | {float}
# Decoded UUIDs by their hex: a replay meets the same owner and stream ids again and again,
# and parsing one costs more than opening the rest of its event. Bounded: when full it starts
# again, which is safe with threads sharing the transcoder (no eviction to race).
_UUID_CACHE = 4_096


class EnumAsTopicValue(Transcoding):
    type = Enum
    name = "enum"

    def encode(self, obj: Enum) -> list[Any]:
        return [get_topic(type(obj)), obj.value]

    def decode(self, data: list[Any]) -> Enum:
        enum_class = resolve_topic(data[0])
        return enum_class(data[1])  # type: ignore[no-any-return]


class DatetimeAsISO(Transcoding):
    """The library's, refusing at write time what could not be read back exactly: an event
    that is stored must be readable for ever, so year 1 at +01:00 (no place in UTC) is an
    `InvalidRecord`, and nothing is stored."""

    type = datetime
    name = "datetime_iso"

    def encode(self, obj: datetime) -> str:
        # Offsets are under a day: only the first and last years can leave the range.
        if obj.year in (1, 9999) and not storable(obj):
            raise InvalidRecord("datetime", "must be a time the ledger can store and read back")
        return obj.isoformat()

    def decode(self, data: str) -> datetime:
        return datetime.fromisoformat(data)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def _is_tagged(obj: dict[str, Any]) -> bool:
    return len(obj) == 2 and "_type_" in obj and "_data_" in obj


class OrjsonTranscoder(Transcoder):
    def __init__(self) -> None:
        self.types: dict[type, Transcoding] = {}
        self.names: dict[str, Transcoding] = {}
        self._uuids: dict[str, UUID] = {}
        self._enum = EnumAsTopicValue()
        self.names[self._enum.name] = self._enum
        for transcoding in (UUIDAsHex(), DatetimeAsISO(), DateAsISO(), DecimalAsStr()):
            self.register(transcoding)

    def register(self, transcoding: Transcoding) -> None:
        self.types[transcoding.type] = transcoding
        self.names[transcoding.name] = transcoding

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(self._tag(obj))

    def decode(self, data: bytes) -> Any:
        obj = orjson.loads(data)
        if type(obj) is dict and not _is_tagged(obj):
            # An event's state: untag its values in place (most are plain and skipped).
            for name, value in obj.items():
                kind = type(value)
                if kind is dict:
                    tag = value.get("_type_")
                    if tag == "datetime_iso" and len(value) == 2:
                        obj[name] = datetime.fromisoformat(value["_data_"])  # every event's
                    elif tag == "uuid_hex" and len(value) == 2:
                        obj[name] = self._uuid(value["_data_"])  # most events name an owner
                    elif "_type_" not in value:  # a plain mapping (an attempt's answers)
                        self._untag_values(value)
                    else:
                        obj[name] = self._untag(value)
                elif kind is list:
                    obj[name] = self._untag(value)
            return obj
        return self._untag(obj)

    def _uuid(self, hex_text: str) -> UUID:
        known = self._uuids.get(hex_text)
        if known is None:
            known = UUID(hex_text)
            if len(self._uuids) >= _UUID_CACHE:
                self._uuids = {}
            self._uuids[hex_text] = known
        return known

    def _untag_values(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A mapping fresh from `loads` with its values untagged, in place: most are plain, and
        copying the mapping to untag none of them was a tenth of decoding an attempt."""
        for key, value in obj.items():
            if type(value) not in _PLAIN_DECODED:
                obj[key] = self._untag(value)  # replaces a value: the keys do not change
        return obj

    def _tag(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _PLAIN:
            return obj
        if kind is float:
            return obj if math.isfinite(obj) else {"_type_": "float_str", "_data_": repr(obj)}
        if kind is dict:
            return {k: v if type(v) in _PLAIN else self._tag(v) for k, v in obj.items()}
        if kind is list:
            return [self._tag(v) for v in obj]
        if kind is tuple:
            return {"_type_": "tuple_as_list", "_data_": [self._tag(v) for v in obj]}
        transcoding = self.types.get(kind)
        if transcoding is None:
            if isinstance(obj, Enum):
                transcoding = self._enum
            else:
                raise TranscodingNotRegisteredError(
                    f"Object of type {kind} is not serializable. Please define and register "
                    "a custom transcoding for this type."
                )
        return {"_type_": transcoding.name, "_data_": self._tag(transcoding.encode(obj))}

    def _untag(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is dict:
            if _is_tagged(obj):
                name = obj["_type_"]
                data = self._untag(obj["_data_"])
                if name == "datetime_iso":  # every event has one: skip the method call
                    return datetime.fromisoformat(data)
                if name == "uuid_hex":
                    return self._uuid(data)
                if name == "tuple_as_list":
                    return tuple(data)
                if name == "float_str":
                    return float(data)
                transcoding = self.names.get(name)
                if transcoding is None:
                    raise TranscodingNotRegisteredError(
                        f"Data serialized with name '{name}' is not deserializable. "
                        "Please register a custom transcoding for this type."
                    )
                return transcoding.decode(data)
            return self._untag_values(obj)
        if kind is list:
            return [self._untag(v) for v in obj]
        return obj

