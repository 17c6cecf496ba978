"""Process settings: what is refused, and how the refusal reads."""

from __future__ import annotations

import pytest

from scheduler.config.settings import load_settings, valid_host
from scheduler.errors import SettingsError


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1%eth0", "localhost", "api.example.com", "api.example.com.",
             "my-host", "xn--bcher-kva.example", "10.0.0.1"],
)  # fmt: skip
def test_host_names_and_addresses_are_valid_hosts(host: str) -> None:
    assert valid_host(host)


@pytest.mark.parametrize(
    "host", ["", "not a host", "[::1]", "-leading.example.com", "trailing-.example.com", "a..b", "999.1.1.1",
             "1.2.3.4.5", "host:8765", "http://host", "under_score.example.com", "x" * 64 + ".example.com",
             ".".join(["a" * 63] * 4 + ["com"])],
)  # fmt: skip
def test_malformed_hosts_are_not(host: str) -> None:
    assert not valid_host(host)


def test_a_bad_api_host_says_what_is_wrong_with_it() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(api_host="not a host", _env_file=None)
    assert str(info.value) == (
        "invalid setting api_host (ZENML_SCHEDULER_API_HOST): 'not a host' is not a valid host name or "
        "IP address; e.g. 127.0.0.1, 0.0.0.0, ::1, api.example.com"
    )
    with pytest.raises(SettingsError, match=r"'\[::1\]' is not a valid host name or IP address \(write an IPv6"):
        load_settings(api_host="[::1]", _env_file=None)
