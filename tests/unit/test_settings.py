"""Settings: every knob is one environment variable, read in one place."""

from __future__ import annotations

import ast
import inspect
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from boost_ledger import settings as settings_module
from boost_ledger.settings import _VARIABLES, Settings

# One unusual value per variable, and the field value it must become.
_SAMPLES: dict[str, tuple[str, object]] = {
    "DATABASE_URL": ("postgresql://u@db.example/boost", "postgresql://u@db.example/boost"),
    "BOOST_DATA_DIR": ("/var/lib/boost", Path("/var/lib/boost")),
    "BOOST_HOST": ("0.0.0.0", "0.0.0.0"),
    "BOOST_PORT": ("8123", 8123),
    "BOOST_PROVIDER_URL": ("https://panel.example/api/v2", "https://panel.example/api/v2"),
    "BOOST_PROVIDER_KEY": ("secret-at-provider", "secret-at-provider"),
    "BOOST_PROVIDER_TIMEOUT_S": ("2.5", 2.5),
    "BOOST_FX_RATE": ("1612.25", Decimal("1612.25")),
    "BOOST_MARKUP_PERCENT": ("7.5", Decimal("7.5")),
    "BOOST_SUBSCRIPTION_DEFAULT_POSTS": ("4", 4),
    "BOOST_POLL_INTERVAL_S": ("0.5", 0.5),
    "BOOST_CATALOG_SYNC_INTERVAL_S": ("60", 60.0),
    "BOOST_SUBMIT_SWEEP_INTERVAL_S": ("0.25", 0.25),
    "BOOST_SUBMIT_POLL_INTERVAL_S": ("0.2", 0.2),
    "BOOST_WORKER_NICE": ("5", 5),
    "BOOST_SUBMIT_ABANDONED_AFTER_S": ("30", 30.0),
    "BOOST_WORKERS": ("0", False),
    "BOOST_POOL_MIN": ("3", 3),
    "BOOST_POOL_MAX": ("30", 30),
    "BOOST_CHECKOUT_BATCH_MAX": ("8", 8),
    "BOOST_STATEMENT_TIMEOUT_MS": ("750", 750),
    "BOOST_DEMO": ("0", False),
    "BOOST_LOG_LEVEL": ("debug", "debug"),
    "BOOST_RATE_LIMIT_PER_S": ("2.5", 2.5),
    "BOOST_RATE_LIMIT_BURST": ("7", 7),
    "BOOST_REQUEST_TIMEOUT_S": ("12.5", 12.5),
    "BOOST_BODY_TIMEOUT_S": ("3", 3.0),
    "BOOST_METRICS_QUERY_TIMEOUT_MS": ("900", 900),
}


def _field_docstrings() -> dict[str, str]:
    """Each field of Settings with the docstring written under it in the source."""
    tree = ast.parse(inspect.getsource(settings_module))
    settings_class = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings"
    )
    docs: dict[str, str] = {}
    body = settings_class.body
    for statement, following in zip(body, [*body[1:], None], strict=True):
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            doc = ""
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                doc = str(following.value.value)
            docs[statement.target.id] = doc
    return docs


def test_every_field_has_exactly_one_variable_and_its_docstring_names_it():
    """No field is configurable by accident or unreachable; the README's table can trust them."""
    docs = _field_docstrings()
    assert set(docs) == set(Settings.__struct_fields__) == set(_VARIABLES)
    assert len(set(_VARIABLES.values())) == len(_VARIABLES)
    for field, variable in _VARIABLES.items():
        assert docs[field].startswith(f"{variable}:"), (field, docs[field])
        assert variable == "DATABASE_URL" or variable.startswith("BOOST_")


def test_the_samples_cover_every_variable():
    """This file tests each variable; a new one must be added here too."""
    assert set(_SAMPLES) == set(_VARIABLES.values())


@pytest.mark.parametrize("variable", sorted(_SAMPLES))
def test_each_variable_sets_its_field(variable):
    """Setting one variable changes its own field and leaves every other at its default."""
    text, expected = _SAMPLES[variable]
    configured = Settings.from_env({variable: text})
    defaults = Settings()
    field = next(name for name, known in _VARIABLES.items() if known == variable)
    assert getattr(configured, field) == expected
    assert type(getattr(configured, field)) is type(expected)
    for other in Settings.__struct_fields__:
        if other != field:
            assert getattr(configured, other) == getattr(defaults, other), other


def test_all_variables_at_once():
    """All variables together give exactly the sampled values."""
    configured = Settings.from_env({variable: text for variable, (text, _) in _SAMPLES.items()})
    for field, variable in _VARIABLES.items():
        assert getattr(configured, field) == _SAMPLES[variable][1]


def test_the_defaults_serve_locally_on_embedded_postgres():
    """With nothing set: embedded PostgreSQL under ./.boost, 127.0.0.1:8000, workers and demo on."""
    defaults = Settings.from_env({})
    assert defaults == Settings()
    assert defaults.database_url is None
    assert defaults.data_dir == Path(".boost")
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8000)
    assert defaults.workers_enabled and defaults.demo_account
    assert defaults.provider_url is None


def test_empty_variables_count_as_unset_and_others_are_ignored():
    """``BOOST_PORT=`` keeps the default; unrelated variables change nothing."""
    environ = {"BOOST_PORT": "", "HOME": "/root", "BOOST_UNKNOWN": "1"}
    assert Settings.from_env(environ) == Settings()


@pytest.mark.parametrize("text", ["1", "true", "True"])
def test_switches_accept_the_usual_spellings_of_on(text):
    """BOOST_WORKERS and BOOST_DEMO take 1/true as on (and 0/false as off)."""
    configured = Settings.from_env({"BOOST_WORKERS": text, "BOOST_DEMO": text})
    assert configured.workers_enabled and configured.demo_account
    assert not Settings.from_env({"BOOST_WORKERS": "false"}).workers_enabled


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("BOOST_PORT", "eighty"),
        ("BOOST_WORKERS", "maybe"),
        ("BOOST_FX_RATE", "lots"),
        ("BOOST_WORKER_NICE", "20"),
        ("BOOST_WORKER_NICE", "-1"),
        ("BOOST_SUBMIT_POLL_INTERVAL_S", "0"),
        ("BOOST_SUBMIT_POLL_INTERVAL_S", "61"),
        ("BOOST_CHECKOUT_BATCH_MAX", "0"),
        ("BOOST_CHECKOUT_BATCH_MAX", "101"),
        ("BOOST_PROVIDER_URL", "ftp://panel.example/api/v2"),
        ("BOOST_PROVIDER_URL", "panel.example/api/v2"),
        ("BOOST_PORT", "0"),
        ("BOOST_PORT", "65536"),
        ("BOOST_PROVIDER_TIMEOUT_S", "0"),
        ("BOOST_PROVIDER_TIMEOUT_S", "nan"),
        ("BOOST_POLL_INTERVAL_S", "0"),
        ("BOOST_POLL_INTERVAL_S", "-1"),
        ("BOOST_CATALOG_SYNC_INTERVAL_S", "inf"),
        ("BOOST_SUBMIT_SWEEP_INTERVAL_S", "nan"),
        ("BOOST_SUBSCRIPTION_DEFAULT_POSTS", "0"),
        ("BOOST_POOL_MIN", "-1"),
        ("BOOST_POOL_MAX", "0"),
        ("BOOST_STATEMENT_TIMEOUT_MS", "0"),
        ("BOOST_STATEMENT_TIMEOUT_MS", "-5"),
        ("BOOST_LOG_LEVEL", "verbose"),
        ("BOOST_LOG_LEVEL", "warn"),
        ("BOOST_POLL_INTERVAL_S", "1e-300"),
        ("BOOST_SUBMIT_POLL_INTERVAL_S", "0.001"),
        ("BOOST_PROVIDER_TIMEOUT_S", "0.05"),
        ("BOOST_REQUEST_TIMEOUT_S", "0.01"),
        ("BOOST_RATE_LIMIT_PER_S", "-1"),
        ("BOOST_RATE_LIMIT_PER_S", "nan"),
        ("BOOST_RATE_LIMIT_BURST", "0"),
        ("BOOST_REQUEST_TIMEOUT_S", "0"),
        ("BOOST_BODY_TIMEOUT_S", "-1"),
        ("BOOST_METRICS_QUERY_TIMEOUT_MS", "0"),
        ("BOOST_FX_RATE", "0"),
        ("BOOST_FX_RATE", "-1500"),
        ("BOOST_FX_RATE", "NaN"),
        ("BOOST_FX_RATE", "Infinity"),
        ("BOOST_FX_RATE", "1000000.01"),
        ("BOOST_FX_RATE", "1500.0000001"),
        ("BOOST_FX_RATE", "1500." + "1" * 60),
        ("BOOST_MARKUP_PERCENT", "20.0000001"),
        ("BOOST_MARKUP_PERCENT", "-1"),
        ("BOOST_MARKUP_PERCENT", "sNaN"),
        ("BOOST_MARKUP_PERCENT", "10001"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable, text):
    """The error names the variable and the value the operator set, not an internal field."""
    with pytest.raises(ValueError, match=f"^{variable}='{text}' is not valid"):
        Settings.from_env({variable: text})


def test_the_bounds_let_the_edges_through():
    """The refusals above stop at the bounds: their edges are accepted."""
    configured = Settings.from_env(
        {
            "BOOST_PORT": "65535",
            "BOOST_FX_RATE": "0.000001000",
            "BOOST_MARKUP_PERCENT": "0",
            "BOOST_POOL_MIN": "0",
            "BOOST_POOL_MAX": "1",
            "BOOST_RATE_LIMIT_PER_S": "0",
            "BOOST_STATEMENT_TIMEOUT_MS": "1",
            "BOOST_SUBSCRIPTION_DEFAULT_POSTS": "1",
        }
    )
    assert (configured.port, configured.fx_rate, configured.markup_percent) == (
        65535, Decimal("0.000001"), Decimal("0"),
    )
    assert (configured.pool_min_size, configured.pool_max_size) == (0, 1)
    quick = Settings.from_env(
        {
            "BOOST_POLL_INTERVAL_S": "0.01",
            "BOOST_PROVIDER_TIMEOUT_S": "0.1",
            "BOOST_LOG_LEVEL": "INFO",
        }
    )
    assert (quick.poll_interval_s, quick.provider_timeout_s, quick.log_level) == (0.01, 0.1, "info")


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"BOOST_POOL_MIN": "11"}, "BOOST_POOL_MIN"),
        ({"BOOST_POOL_MIN": "5", "BOOST_POOL_MAX": "4"}, "BOOST_POOL_MIN"),
        ({"BOOST_SUBMIT_ABANDONED_AFTER_S": "10"}, "BOOST_SUBMIT_ABANDONED_AFTER_S"),
        (
            {"BOOST_PROVIDER_TIMEOUT_S": "200", "BOOST_SUBMIT_ABANDONED_AFTER_S": "150"},
            "BOOST_SUBMIT_ABANDONED_AFTER_S",
        ),
    ],
)
def test_settings_that_contradict_each_other_are_refused_naming_the_variable(environ, variable):
    """A pool whose least exceeds its most (asyncpg refused it at the server's start, with a
    stack trace), or attempts given up while their provider call may still be waiting: each is
    refused as one line that names the variable, then the one it contradicts."""
    with pytest.raises(ValueError, match=f"^{variable}=") as refused:
        Settings.from_env(environ)
    other = "BOOST_POOL_MAX" if variable == "BOOST_POOL_MIN" else "BOOST_PROVIDER_TIMEOUT_S"
    assert other in str(refused.value)


def test_settings_built_by_hand_are_held_to_the_same_checks():
    """A command that overrides a field (``boost serve --port``, a command's small pool) builds
    its Settings with msgspec.structs.replace: the checks across fields hold there too."""
    with pytest.raises(ValueError, match=r"^BOOST_FX_RATE='0' is not valid"):
        Settings(fx_rate=Decimal("0"))
    with pytest.raises(ValueError, match=r"^BOOST_POOL_MIN=3 is not valid"):
        msgspec.structs.replace(Settings(), pool_min_size=3, pool_max_size=2)


@pytest.mark.parametrize("text", ["0.00000000", "0E-9", "20.000000000", "1.5E+3"])
def test_a_markup_with_trailing_zeros_has_no_decimal_places_more(text):
    """Trailing zeros are no decimal places: a markup of 0 written "0.00000000" is 0, as
    "20.000000000" is 20 (the zero alone was refused as having 7 places)."""
    assert Settings.from_env({"BOOST_MARKUP_PERCENT": text}).markup_percent == Decimal(text)
