"""The reporting time zone is checked when the service starts, not when finance asks."""

import pytest
from pydantic import ValidationError

from billing.settings import Settings


def test_reporting_timezone_defaults_to_utc() -> None:
    assert Settings(_env_file=None).reporting_timezone == "UTC"  # type: ignore[call-arg]


def test_an_unknown_reporting_timezone_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="is not an IANA time zone"):
        Settings(_env_file=None, reporting_timezone="Mars/Olympus")  # type: ignore[call-arg]
