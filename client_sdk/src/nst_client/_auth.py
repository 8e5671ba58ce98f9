"""Credentials: where the bearer tokens come from, and the re-read of an expired key.

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

:class:`Credentials` holds one token and the key file it came from (re-read once after an
authentication error: TorchServe keys expire and change on restart).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from ._constants import DEFAULT_KEY_FILE, ENV_KEY_FILE, ENV_TOKEN, KEY_FILE_SECTION
from ._exceptions import KeyFileError, NSTError

__all__ = ["Credentials", "ManagementCredentials", "read_key_file", "resolve_credentials", "resolve_token",
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


class Credentials:
    """One bearer token and, when it was read from a key file, that file (re-read on an
    authentication error: TorchServe keys expire and change on restart).

    Attributes:
        token: The bearer token, or ``None`` (no ``Authorization`` header is sent).
        key_file: The key file the token came from, else ``None``.
        section: The key file section: ``"inference"`` or ``"management"``.
    """

    def __init__(self, token: Optional[str], key_file: Optional[Path], section: str = KEY_FILE_SECTION) -> None:
        self.token = token
        self.key_file = key_file
        self.section = section

    @classmethod
    def inference(cls, token: Optional[str], key_file: Optional[PathArg]) -> Credentials:
        """The inference key: ``token``, else ``$NST_TOKEN``, else the key file (see above).

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed.
        """
        return cls(*resolve_credentials(token, key_file), section=KEY_FILE_SECTION)

    @classmethod
    def management(cls, token: Optional[str], key_file: Optional[PathArg]) -> Credentials:
        """The management key: ``token``, else ``$NST_MANAGEMENT_TOKEN``, else the key file's
        ``["management"]["key"]`` (key file found as for the inference key).

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed or has no management key.
        """
        found = resolve_credentials(token, key_file, section=MANAGEMENT_KEY_SECTION, env_token=ENV_MANAGEMENT_TOKEN)
        return cls(*found, section=MANAGEMENT_KEY_SECTION)

    def headers(self) -> Dict[str, str]:
        """``{"Authorization": "Bearer <token>"}``, or ``{}`` without a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def reread(self) -> bool:
        """Re-read the key file; True if it now holds a different key (then in use).

        Returns False without a key file, or when it cannot be read or is unchanged.
        """
        if self.key_file is None:
            return False
        try:
            key = read_key_file(self.key_file, self.section)
        except (OSError, NSTError):
            return False
        if key == self.token:
            return False
        self.token = key
        return True


class ManagementCredentials:
    """The management key, looked up at client construction (same key file, same cwd as the
    inference key) but failing only when :meth:`get` is called: a client that never calls
    ``info()`` needs no management key.

    Args:
        token: The ``management_token`` argument.
        key_file: The ``key_file`` argument.
    """

    def __init__(self, token: Optional[str], key_file: Optional[PathArg]) -> None:
        self._credentials: Optional[Credentials] = None
        self._error: Optional[BaseException] = None
        try:
            self._credentials = Credentials.management(token, key_file)
        except (OSError, NSTError) as exc:
            self._error = exc

    def get(self) -> Credentials:
        """The management credentials.

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed or has no management key.
        """
        if self._credentials is None:
            assert self._error is not None
            raise self._error.with_traceback(None)
        return self._credentials
