"""Typed decoders for the few events the auditor reads as raw JSON."""

from __future__ import annotations

import msgspec

from boost_ledger.ledger.events import LedgerSealed

_seal_decoder = msgspec.json.Decoder(LedgerSealed)


def decode_seal(data: str) -> LedgerSealed:
    return _seal_decoder.decode(data)
