"""Token resolution.

Order (first hit wins):

1. the ``token`` argument;
2. the ``NST_TOKEN`` environment variable;
3. ``["inference"]["key"]`` of a TorchServe key file: the ``key_file`` argument, else the
   ``NST_KEY_FILE`` environment variable, else ``./key_file.json`` (current directory).

A key file named explicitly (argument or env var) must exist; the default
``./key_file.json`` is used only if present. If nothing is found the client sends no
``Authorization`` header, and TorchServe (with token auth enabled) answers
``AuthenticationError``.

The management API (``info()``) has its own key: the ``management_token`` argument, else the
``NST_MANAGEMENT_TOKEN`` environment variable, else ``["management"]["key"]`` of the same key
file (found in the same order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Tuple, Union

from ._constants import DEFAULT_KEY_FILE, ENV_KEY_FILE, ENV_TOKEN, KEY_FILE_SECTION
from ._exceptions import KeyFileError

__all__ = ["read_key_file", "resolve_credentials", "resolve_token",
           "MANAGEMENT_KEY_SECTION", "ENV_MANAGEMENT_TOKEN"]

PathArg = Union[str, "os.PathLike[str]"]

# The key file's section holding the management API key (GET /models/... for info()), and the
# environment variable that overrides it.
MANAGEMENT_KEY_SECTION = "management"
ENV_MANAGEMENT_TOKEN = "NST_MANAGEMENT_TOKEN"


def read_key_file(path: PathArg, section: str = KEY_FILE_SECTION) -> str:
    """Read one key from a TorchServe ``key_file.json``.

    Args:
        path: Path of the key file.
        section: ``"inference"`` (the default) or ``"management"``.

    Returns:
        The value of ``[section]["key"]``.

    Raises:
        FileNotFoundError: The file does not exist.
        KeyFileError: The file is not JSON or has no such key.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"Key file {p} is not valid JSON: {exc}") from exc
    try:
        key = data[section]["key"]
    except (KeyError, TypeError) as exc:
        raise KeyFileError(f'Key file {p} has no ["{section}"]["key"] entry') from exc
    if not isinstance(key, str) or not key.strip():
        raise KeyFileError(f'Key file {p}: ["{section}"]["key"] is not a non-empty string')
    return key.strip()


def resolve_token(token: Optional[str] = None, key_file: Optional[PathArg] = None) -> Optional[str]:
    """Find the bearer token, following the documented order (see :func:`resolve_credentials`)."""
    return resolve_credentials(token, key_file)[0]


def resolve_credentials(
    token: Optional[str] = None, key_file: Optional[PathArg] = None, *,
    section: str = KEY_FILE_SECTION, env_token: str = ENV_TOKEN,
) -> Tuple[Optional[str], Optional[Path]]:
    """Find the bearer token, following the documented order, and the key file it came from.

    Args:
        token: Explicit token; wins over everything else.
        key_file: Explicit key file path; wins over ``NST_KEY_FILE`` and ``./key_file.json``.
        section: The key file section to read: ``"inference"`` (default) or ``"management"``.
        env_token: The environment variable consulted after ``token``: ``NST_TOKEN``
            (default), or ``NST_MANAGEMENT_TOKEN`` for the management key.

    Returns:
        ``(token, key file)``: the token (``None`` if no source provided one), and the key file
        it was read from (``None`` for a token from the argument or ``NST_TOKEN``), which the
        client re-reads when the server says the key expired.

    Raises:
        FileNotFoundError: An explicitly named key file does not exist.
        KeyFileError: The key file that was chosen is malformed.
    """
    if token:
        return token.strip(), None
    from_env = os.environ.get(env_token, "").strip()
    if from_env:
        return from_env, None
    explicit = key_file if key_file else (os.environ.get(ENV_KEY_FILE) or None)
    if explicit:
        return read_key_file(explicit, section), Path(explicit)
    default = Path.cwd() / DEFAULT_KEY_FILE
    if default.is_file():
        return read_key_file(default, section), default
    return None, None
