"""The provider's failures, translated once at the boundary into one small error tree.

How a caller must read them depends on whether the call changes state upstream:

- Reads (``services``, ``status``, ``multi_status``, ``refill_status``, ``balance``) may simply be
  tried again later, whatever the error.
- ``add`` (and likewise ``cancel`` and ``refill``) is never retried by the client, because the
  protocol has no idempotency key. ``ProviderRefused`` is a definite refusal: nothing was done
  upstream. ``ProviderUnavailable`` and ``ProviderMalformed`` mean the outcome is *unknown*: the
  provider may well have created the order before the reply was lost or garbled, so the caller
  must record the submission as unknown and reconcile it, never resubmit blindly.
"""


class ProviderError(Exception):
    """Base of every error the upstream client raises."""


class ProviderRefused(ProviderError):
    """The provider answered ``{"error": text}``: a definite "no"."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __eq__(self, other: object) -> bool:
        # Per-item refusals are returned as values, so comparing them by text keeps tests and
        # callers simple.
        return isinstance(other, ProviderRefused) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class ProviderUnavailable(ProviderError):
    """No usable reply: timeout, connection refused or dropped, HTTP 5xx.

    ``sent`` is False only when the transport vouches that no byte of the request went out
    (a full pool, or a connection never made): then even an ``add`` may simply be tried again.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class ProviderMalformed(ProviderError):
    """A reply that is not what the protocol promises: HTML, bad JSON, wrong shape."""
