"""API keys: creation, hashed storage, lookup, scopes; and the per-key token bucket."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from scheduler.api.keys import KeyRing, create_key, hash_key, read_key_file, revoke_key
from scheduler.api.rate_limit import RateLimiter, retry_after_header
from scheduler.config.stored_keys import StoredKey
from scheduler.errors import SettingsError


def test_created_key_is_stored_only_as_its_hash_in_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_key(path, "ci", ["trigger"])
    assert key.startswith("zsk_") and len(key) > 40
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (entry,) = read_key_file(path)
    assert entry.name == "ci" and entry.scopes == ("trigger",)
    assert create_key(path, "other", ["read"]) != key


def test_duplicate_names_and_bad_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "ci", ["trigger"])
    with pytest.raises(SettingsError, match="already exists"):
        create_key(path, "ci", ["read"])
    with pytest.raises(SettingsError, match="invalid API key"):
        create_key(path, "has space", ["read"])
    path.write_text(json.dumps({"keys": [{"name": "x", "scopes": ["root"], "hash": "sha256:00"}]}))
    with pytest.raises(SettingsError, match="not valid"):
        read_key_file(path)


@pytest.mark.parametrize(
    ("scopes", "read", "trigger", "admin"),
    [(("read",), True, False, False), (("trigger",), True, True, False), (("admin",), True, True, True)],
)
def test_scopes_nest(scopes: tuple[str, ...], read: bool, trigger: bool, admin: bool) -> None:
    key = StoredKey(name="k", scopes=scopes, hash=hash_key("x"))  # type: ignore[arg-type]
    assert (key.allows("read"), key.allows("trigger"), key.allows("admin")) == (read, trigger, admin)


def test_keyring_finds_keys_from_settings_and_file_and_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    configured = StoredKey(name="env", scopes=("read",), hash=hash_key("zsk_from-settings"))
    ring = KeyRing([configured], path)
    assert ring.lookup("zsk_from-settings") == configured
    assert ring.lookup("zsk_unknown") is None
    key = create_key(path, "ci", ["trigger"])
    ring.refresh()
    found = ring.lookup(key)
    assert found is not None and found.name == "ci"
    assert revoke_key(path, "ci") and not revoke_key(path, "ci")
    ring.refresh()
    assert ring.lookup(key) is None and len(ring) == 1


def test_token_bucket_allows_burst_then_paces_and_says_how_long_to_wait() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a", 100.0)
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    assert limiter.take("b", 100.0) == 0.0  # buckets are per key
    assert limiter.take("a", 100.5) == 0.0  # half a second buys one token at 2/s
    assert limiter.take("a", 100.5) > 0
    assert limiter.take("a", 200.0) == 0.0  # refilled, but never beyond the burst
    assert [limiter.take("a", 200.0) for _ in range(3)][-1] > 0


def test_rate_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.take("a", 1.0) == 0.0 for _ in range(1000))


def test_the_buckets_kept_are_bounded_and_a_spent_one_outlives_full_ones() -> None:
    """One client sending from a million addresses must not grow the limiter without bound."""
    limiter = RateLimiter(rate=1.0, burst=2, max_buckets=100)
    limiter.take("spent", 0.0), limiter.take("spent", 0.0)
    for n in range(10_000):
        limiter.take(f"10.0.{n // 256}.{n % 256}", 0.0)
        assert len(limiter._buckets) <= 100
    limiter = RateLimiter(rate=1.0, burst=2, max_buckets=3)
    limiter.take("spent", 0.0), limiter.take("spent", 0.0)
    limiter.take("full-again", 0.0)
    limiter.take("third", 0.0)
    assert limiter.take("new", 5.0) == 0.0  # all three have refilled by now: they are dropped
    assert limiter.take("spent", 5.0) == 0.0
    limiter.take("spent", 5.0)
    limiter.take("x", 5.0)
    limiter.take("y", 5.0)  # "spent" is empty: the refilled ones go first
    assert limiter.take("spent", 5.0) > 0
