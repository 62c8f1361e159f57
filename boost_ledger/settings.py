"""Settings, read once from the environment (every knob is a ``BOOST_*`` variable, and the
database is ``DATABASE_URL``).

Each field documents its variable; the README lists them all, with the built-in simulator's
own (``upstream/simulator.py``'s ``SimulatorOptions``, read through ``read_env`` too). Nothing
else in the code reads ``os.environ`` for configuration, so a test can build a ``Settings`` by
hand; the one exception is ``boost``'s first logging setup (``cli/main.py``), which takes
BOOST_LOG_LEVEL before a command has read the settings, and falls back to ``info`` for a value
they then refuse.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import msgspec

_Knobs = TypeVar("_Knobs", bound=msgspec.Struct)

SIMULATOR_KEY = "sim-key"
"""The built-in simulator's key: BOOST_PROVIDER_KEY's default."""

DAY_S = 86_400.0

Seconds = Annotated[float, msgspec.Meta(ge=0.01, le=DAY_S)]
"""A period: from 0.01 s (a loop waking more often would only spin) to a day (a NaN or an
infinity is refused)."""
Timeout = Annotated[float, msgspec.Meta(ge=0.1, le=3600)]
"""A timeout in seconds: from 0.1 s (less would cut short what is merely slow) to an hour."""
Milliseconds = Annotated[int, msgspec.Meta(ge=1, le=3_600_000)]
"""A database timeout: from 1 ms to an hour (PostgreSQL reads 0 as no timeout at all)."""

MAX_FX_RATE = Decimal(1_000_000)
MAX_MARKUP_PERCENT = Decimal(10_000)
MAX_RATE_DECIMALS = 6
"""Decimal places of BOOST_FX_RATE and BOOST_MARKUP_PERCENT at most: prices are computed exactly
(``money.ngn_rate_per_1000_kobo``), so a rate written to 60 places would make every service
impossible to price, and one sync would delist the whole catalog."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    """DATABASE_URL: an existing PostgreSQL; unset → the embedded one under ``data_dir``."""
    data_dir: Path = Path(".boost")
    """BOOST_DATA_DIR: where the embedded PostgreSQL keeps its data."""
    host: str = "127.0.0.1"
    """BOOST_HOST: the address ``boost serve`` binds."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    """BOOST_PORT: the port ``boost serve`` binds (1 to 65535)."""
    provider_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^/?#\s]+")] | None = None
    """BOOST_PROVIDER_URL: the upstream SMM v2 endpoint (http or https); unset → the built-in
    simulator."""
    provider_key: str = SIMULATOR_KEY
    """BOOST_PROVIDER_KEY: the reseller's key at the provider."""
    provider_timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=300)] = 10.0
    """BOOST_PROVIDER_TIMEOUT_S: timeout of one provider call."""
    fx_rate: Decimal = Decimal("1500")
    """BOOST_FX_RATE: NGN per unit of the provider's currency (more than 0, at most 1,000,000)."""
    markup_percent: Decimal = Decimal("20")
    """BOOST_MARKUP_PERCENT: added on top of the converted provider rate (0 to 10,000)."""
    subscription_default_posts: Annotated[int, msgspec.Meta(ge=1, le=10**9)] = 10
    """BOOST_SUBSCRIPTION_DEFAULT_POSTS: posts charged for a Subscriptions order that omits it."""
    poll_interval_s: Seconds = 5.0
    """BOOST_POLL_INTERVAL_S: how often the poller asks the provider about each active order
    (it looks for due ones every ``poller.WAKE_S``, or this interval if shorter)."""
    catalog_sync_interval_s: Seconds = 600.0
    """BOOST_CATALOG_SYNC_INTERVAL_S: how often the catalog is re-read from the provider."""
    submit_sweep_interval_s: Seconds = 2.0
    """BOOST_SUBMIT_SWEEP_INTERVAL_S: periodic sweep for orders not yet submitted."""
    submit_poll_interval_s: Annotated[float, msgspec.Meta(ge=0.01, le=60)] = 0.05
    """BOOST_SUBMIT_POLL_INTERVAL_S: how often the submitter of a worker process (``boost
    worker``, which is how ``boost serve`` runs its workers) looks for new orders; while it finds
    none the interval doubles, up to ``submitter.IDLE_POLL_CAP_S``."""
    worker_nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10
    """BOOST_WORKER_NICE: added to the CPU niceness of a process that runs the workers apart
    from the API (0 to 19), so that API requests come first when the cores are busy."""
    submit_abandoned_after_s: Seconds = 120.0
    """BOOST_SUBMIT_ABANDONED_AFTER_S: an attempt with no outcome this old (its process died)
    becomes SubmissionUnknown for an operator; it must exceed BOOST_PROVIDER_TIMEOUT_S, and had
    best be well above it."""
    workers_enabled: bool = True
    """BOOST_WORKERS: "0" runs ``boost serve`` without its worker child (no submitter, poller
    or catalog sync)."""
    pool_min_size: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 2
    """BOOST_POOL_MIN: smallest database pool per process (at most BOOST_POOL_MAX)."""
    pool_max_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    """BOOST_POOL_MAX: largest database pool per process."""
    checkout_batch_max: Annotated[int, msgspec.Meta(ge=1, le=100)] = 32
    """BOOST_CHECKOUT_BATCH_MAX: checkouts one process places together in one transaction, at
    most (1 to 100); 1 places each on its own."""
    statement_timeout_ms: Milliseconds = 5000
    """BOOST_STATEMENT_TIMEOUT_MS: a database statement running longer is cancelled."""
    demo_account: bool = True
    """BOOST_DEMO: "0" skips opening the demo account on the first start."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """BOOST_LOG_LEVEL: debug, info, warning or error (in any case)."""
    rate_limit_per_s: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 50.0
    """BOOST_RATE_LIMIT_PER_S: requests per second one API key may sustain (per process); 0: off."""
    rate_limit_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 100
    """BOOST_RATE_LIMIT_BURST: requests an idle API key may send at once before the rate applies."""
    request_timeout_s: Timeout = 30.0
    """BOOST_REQUEST_TIMEOUT_S: a request still unanswered after this long gets 503."""
    body_timeout_s: Timeout = 10.0
    """BOOST_BODY_TIMEOUT_S: a client must send its whole request body within this (else 408)."""
    metrics_query_timeout_ms: Milliseconds = 2000
    """BOOST_METRICS_QUERY_TIMEOUT_MS: bound on the database queries run for one /metrics scrape
    (all of them together)."""

    def __post_init__(self) -> None:
        """What one field's bounds cannot say. (msgspec reports a ValueError raised here as a
        ValidationError of the whole; ``explain`` passes its message through.)"""
        if not (_within_rate_decimals(self.fx_rate) and 0 < self.fx_rate <= MAX_FX_RATE):
            raise ValueError(
                f"BOOST_FX_RATE={str(self.fx_rate)!r} is not valid: it must be more than 0 and"
                f" at most {MAX_FX_RATE}, with at most {MAX_RATE_DECIMALS} decimal places (at 0"
                " no service can be priced: a sync delists them all)"
            )
        markup = self.markup_percent
        if not (_within_rate_decimals(markup) and 0 <= markup <= MAX_MARKUP_PERCENT):
            raise ValueError(
                f"BOOST_MARKUP_PERCENT={str(markup)!r} is not valid: it must be"
                f" from 0 to {MAX_MARKUP_PERCENT}, with at most {MAX_RATE_DECIMALS} decimal places"
            )
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"BOOST_POOL_MIN={self.pool_min_size} is not valid: it must not exceed"
                f" BOOST_POOL_MAX={self.pool_max_size} (their defaults are 2 and 10)"
            )
        if self.submit_abandoned_after_s <= self.provider_timeout_s:
            raise ValueError(
                f"BOOST_SUBMIT_ABANDONED_AFTER_S={self.submit_abandoned_after_s} is not valid: it"
                f" must exceed BOOST_PROVIDER_TIMEOUT_S={self.provider_timeout_s} (their defaults"
                " are 120 and 10), or an attempt still waiting for its reply is given up as"
                " unknown"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        if "BOOST_LOG_LEVEL" in env:  # INFO or Info is info
            env["BOOST_LOG_LEVEL"] = env["BOOST_LOG_LEVEL"].lower()
        return read_env(cls, _VARIABLES, env, dec_hook=_decode_hook)


def _within_rate_decimals(value: Decimal) -> bool:
    """Finite, and written with at most ``MAX_RATE_DECIMALS`` decimal places (1.5E+3 has none)."""
    if not value.is_finite():
        return False
    if value.is_zero():  # 0E-8: no digit but zeros, so no place (its one zero is not trailing)
        return True
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    written = "".join(map(str, digits))
    trailing_zeros = len(written) - len(written.rstrip("0"))  # 1500.50 has one place
    return -(exponent + trailing_zeros) <= MAX_RATE_DECIMALS


def _decode_hook(target: type, value: object) -> object:
    if target is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot read {target} from the environment")


def read_env(
    kind: type[_Knobs],
    variables: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    dec_hook: Callable[[type, object], object] | None = None,
) -> _Knobs:
    """A ``kind`` from the environment: each field from its variable in ``variables`` (one
    that is empty counts as unset), or a ValueError naming the variable and its value."""
    env = os.environ if environ is None else environ
    values = {name: env[variable] for name, variable in variables.items() if env.get(variable)}
    try:
        return msgspec.convert(values, kind, strict=False, dec_hook=dec_hook)
    except msgspec.ValidationError as error:
        raise ValueError(explain(error, values, variables)) from None


def explain(
    error: msgspec.ValidationError, values: Mapping[str, object], variables: Mapping[str, str]
) -> str:
    """The refusal in the operator's terms: the variable and its value, not the field."""
    message = str(error)
    if " - at `$." not in message:
        return message  # a refusal of __post_init__'s, already in the operator's terms
    field = message.rpartition("at `$.")[2].rstrip("`")
    if field in variables and field in values:
        reason = message.rpartition(" - at ")[0]
        return f"{variables[field]}={values[field]!r} is not valid: {reason}"
    return f"invalid settings: {message}"


_VARIABLES = {
    "database_url": "DATABASE_URL",
    "data_dir": "BOOST_DATA_DIR",
    "host": "BOOST_HOST",
    "port": "BOOST_PORT",
    "provider_url": "BOOST_PROVIDER_URL",
    "provider_key": "BOOST_PROVIDER_KEY",
    "provider_timeout_s": "BOOST_PROVIDER_TIMEOUT_S",
    "fx_rate": "BOOST_FX_RATE",
    "markup_percent": "BOOST_MARKUP_PERCENT",
    "subscription_default_posts": "BOOST_SUBSCRIPTION_DEFAULT_POSTS",
    "poll_interval_s": "BOOST_POLL_INTERVAL_S",
    "catalog_sync_interval_s": "BOOST_CATALOG_SYNC_INTERVAL_S",
    "submit_sweep_interval_s": "BOOST_SUBMIT_SWEEP_INTERVAL_S",
    "submit_poll_interval_s": "BOOST_SUBMIT_POLL_INTERVAL_S",
    "worker_nice": "BOOST_WORKER_NICE",
    "submit_abandoned_after_s": "BOOST_SUBMIT_ABANDONED_AFTER_S",
    "workers_enabled": "BOOST_WORKERS",
    "pool_min_size": "BOOST_POOL_MIN",
    "pool_max_size": "BOOST_POOL_MAX",
    "checkout_batch_max": "BOOST_CHECKOUT_BATCH_MAX",
    "statement_timeout_ms": "BOOST_STATEMENT_TIMEOUT_MS",
    "demo_account": "BOOST_DEMO",
    "log_level": "BOOST_LOG_LEVEL",
    "rate_limit_per_s": "BOOST_RATE_LIMIT_PER_S",
    "rate_limit_burst": "BOOST_RATE_LIMIT_BURST",
    "request_timeout_s": "BOOST_REQUEST_TIMEOUT_S",
    "body_timeout_s": "BOOST_BODY_TIMEOUT_S",
    "metrics_query_timeout_ms": "BOOST_METRICS_QUERY_TIMEOUT_MS",
}
