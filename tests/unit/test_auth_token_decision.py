"""The studio decides about the token before the server starts."""

from __future__ import annotations

import stat

import pytest

from backend.utils.config import Settings
from backend.web.access_token import TOKEN_FILE_NAME, banner, decide_token, is_loopback


def settings(tmp_path, **kw) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **kw)


@pytest.mark.parametrize(
    "host,expected",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("studio.lan", False),
    ],
)
def test_loopback_detection(host, expected):
    assert is_loopback(host) is expected


def test_loopback_without_token_stays_open(tmp_path):
    d = decide_token(settings(tmp_path))
    assert d.token == "" and d.source == "loopback"
    assert not (tmp_path / TOKEN_FILE_NAME).exists()


def test_a_set_token_always_turns_the_check_on(tmp_path):
    d = decide_token(settings(tmp_path, token="  mine  "))
    assert d.token == "mine" and d.source == "settings"
    d = decide_token(settings(tmp_path, token="mine", host="0.0.0.0", allow_open_lan=True))
    assert d.token == "mine"


@pytest.mark.parametrize("kw", [{"host": "0.0.0.0"}, {"behind_tunnel": True}])
def test_exposed_server_gets_a_generated_token_that_is_kept(tmp_path, kw):
    first = decide_token(settings(tmp_path, **kw))
    assert first.source == "generated" and len(first.token) >= 32
    path = tmp_path / TOKEN_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = decide_token(settings(tmp_path, **kw))
    assert again.token == first.token and again.source == "saved"
    text = banner(settings(tmp_path, **kw), first)
    assert first.token in text and "Access token" in text and "접근 토큰" in text


def test_open_lan_opt_out_warns_loudly_but_not_behind_a_tunnel(tmp_path):
    d = decide_token(settings(tmp_path, host="0.0.0.0", allow_open_lan=True))
    assert d.token == "" and d.source == "open-lan" and "WARNING" in d.warning
    assert "WARNING" in banner(settings(tmp_path, host="0.0.0.0"), d)
    d = decide_token(settings(tmp_path, behind_tunnel=True, allow_open_lan=True))
    assert d.token and d.source == "generated"
