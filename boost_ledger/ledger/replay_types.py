"""Typed decoders for events read as JSON text: the auditor's seals, and the replays, which
decode each event's ``data::text`` straight into its struct (one step, no dict in between)."""

from __future__ import annotations

import msgspec

from boost_ledger.ledger.events import EVENT_TYPES, Event, LedgerSealed

_seal_decoder = msgspec.json.Decoder(LedgerSealed)
_event_decoders = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()}


def decode_seal(data: str) -> LedgerSealed:
    return _seal_decoder.decode(data)


def decode_event_json(type_name: str, data: str) -> Event:
    """The typed event from its stored ``type`` and its data as JSON text (``data::text``)."""
    event: Event = _event_decoders[type_name].decode(data)
    return event
