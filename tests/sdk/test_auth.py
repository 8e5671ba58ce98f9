"""Token resolution order and the Authorization header."""

from __future__ import annotations

from pathlib import Path

import pytest
from nst_client import AuthenticationError, KeyFileError, StyleTransferClient


def _auth_header(fake_server, **kwargs):
    fake_server.reply(200, {"status": "Healthy"})
    StyleTransferClient(base_url=fake_server.url, **kwargs).health()
    return fake_server.requests[-1].headers.get("Authorization")


@pytest.fixture
def all_sources(monkeypatch, tmp_path, write_key_file):
    """Every source set, each with a distinct token; returns the explicit key file path."""
    monkeypatch.setenv("NST_TOKEN", "from-env")
    env_file = write_key_file(tmp_path / "env_keys.json", "from-env-key-file")
    monkeypatch.setenv("NST_KEY_FILE", str(env_file))
    write_key_file(tmp_path / "key_file.json", "from-cwd-key-file")  # cwd is tmp_path
    return write_key_file(tmp_path / "arg_keys.json", "from-arg-key-file")


def test_token_argument_wins(fake_server, all_sources):
    assert _auth_header(fake_server, token="from-arg", key_file=all_sources) == "Bearer from-arg"


def test_env_token_beats_key_files(fake_server, all_sources):
    assert _auth_header(fake_server, key_file=all_sources) == "Bearer from-env"


def test_key_file_argument_beats_env_key_file(fake_server, all_sources, monkeypatch):
    monkeypatch.delenv("NST_TOKEN")
    assert _auth_header(fake_server, key_file=all_sources) == "Bearer from-arg-key-file"


def test_env_key_file_beats_cwd_key_file(fake_server, all_sources, monkeypatch):
    monkeypatch.delenv("NST_TOKEN")
    assert _auth_header(fake_server) == "Bearer from-env-key-file"


def test_cwd_key_file(fake_server, write_key_file, tmp_path, monkeypatch):
    sub = tmp_path / "ts"
    sub.mkdir()
    write_key_file(sub / "key_file.json", "WCxjk-af")
    monkeypatch.chdir(sub)
    assert _auth_header(fake_server) == "Bearer WCxjk-af"  # the inference key, not management/API


def test_no_token_means_no_header(fake_server):
    assert _auth_header(fake_server) is None


def test_empty_env_token_is_ignored(fake_server, monkeypatch):
    monkeypatch.setenv("NST_TOKEN", "")
    assert _auth_header(fake_server) is None


def test_explicit_missing_key_file_raises(monkeypatch):
    with pytest.raises(FileNotFoundError):
        StyleTransferClient(key_file="nope.json")
    monkeypatch.setenv("NST_KEY_FILE", "also-nope.json")
    with pytest.raises(FileNotFoundError):
        StyleTransferClient()


@pytest.mark.parametrize("text", ["{not json", '{"management": {"key": "x"}}', '{"inference": {"key": ""}}', "[]"])
def test_malformed_key_file_raises(tmp_path: Path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(KeyFileError):
        StyleTransferClient(key_file=path)


def test_repr_does_not_leak_token():
    assert "s3cret" not in repr(StyleTransferClient(token="s3cret"))


INVALID_KEY = {"code": 400, "type": "InvalidKeyException",
               "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"}


def test_expired_key_rereads_the_key_file_and_retries_once(fake_server, tmp_path, write_key_file):
    key_file = write_key_file(tmp_path / "key_file.json", "old-key")
    client = StyleTransferClient(base_url=fake_server.url, key_file=key_file, max_retries=0)
    write_key_file(key_file, "new-key")  # the server was restarted or the key regenerated
    fake_server.reply(400, INVALID_KEY)
    fake_server.reply(200, {"status": "Healthy"})
    assert client.health() == {"status": "Healthy"}
    assert [r.headers["Authorization"] for r in fake_server.requests] == ["Bearer old-key", "Bearer new-key"]


def test_unchanged_key_file_is_not_retried(fake_server, tmp_path, write_key_file):
    key_file = write_key_file(tmp_path / "key_file.json", "same-key")
    fake_server.reply(400, INVALID_KEY)
    fake_server.reply(200, {"status": "Healthy"})
    with pytest.raises(AuthenticationError):
        StyleTransferClient(base_url=fake_server.url, key_file=key_file, max_retries=0).health()
    assert len(fake_server.requests) == 1


def test_explicit_token_is_never_replaced(fake_server, tmp_path, write_key_file, monkeypatch):
    write_key_file(tmp_path / "key_file.json", "file-key")
    monkeypatch.chdir(tmp_path)
    fake_server.reply(400, INVALID_KEY)
    fake_server.reply(200, {"status": "Healthy"})
    with pytest.raises(AuthenticationError):
        StyleTransferClient(base_url=fake_server.url, token="explicit", max_retries=0).health()
    assert len(fake_server.requests) == 1
