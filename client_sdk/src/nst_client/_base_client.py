"""What the sync and the async client share: the constructor (configuration resolved once) and
the :class:`~nst_client._request.Request` of each call. The two subclasses only send them
(``_client.py`` on requests, ``_async.py`` on httpx).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Mapping, Optional, Union

from ._auth import Credentials, ManagementCredentials
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MANAGEMENT_PORT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    ENV_MANAGEMENT_URL,
)
from ._images import ImageInput, StyleInput
from ._request import Request, read_timeout_for, split_stylize_args, stylize_body

__all__ = ["BaseClient", "management_url_for"]


def management_url_for(base_url: str) -> str:
    """The default management API root for an inference API root: same scheme and host, port 8081.

    Example: ``"https://nst.example:8443/x"`` -> ``"https://nst.example:8081"``.
    """
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme or 'http'}://{host}:{DEFAULT_MANAGEMENT_PORT}"


class BaseClient:
    """The configuration and the calls of a client, without a transport.

    A subclass supplies the transport: :meth:`_open` (its connection pool) and, when its
    library is optional, :meth:`_require_transport`.
    """

    def __init__(
        self,
        *,
        base_url: Optional[str] = None,
        model: str = DEFAULT_MODEL,
        token: Optional[str] = None,
        key_file: Optional[Union[str, os.PathLike[str]]] = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        management_url: Optional[str] = None,
        management_token: Optional[str] = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: Inference API root, e.g. ``"http://host:8080"``.
            model: Registered TorchServe model name.
            token: Bearer token (TorchServe inference key).
            key_file: Path of a TorchServe ``key_file.json`` to read the inference key from.
            timeout: Read timeout in seconds: the longest wait for the server's answer.
            connect_timeout: TCP connect timeout in seconds.
            max_retries: Retries after the first attempt, for connection failures and HTTP
                429/502/503/504 only; ``0`` disables retrying.
            management_url: TorchServe management API root for ``info()``, e.g.
                ``"http://host:8081"``.
            management_token: TorchServe management key for ``info()``.

        Raises:
            MissingDependencyError: The async client's httpx is not installed.
            ValueError: A timeout is not positive or ``max_retries`` is negative.
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file is malformed.
        """
        self._require_transport()
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be positive (seconds)")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url: str = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        self.management_url: str = (management_url or os.environ.get(ENV_MANAGEMENT_URL)
                                    or management_url_for(self.base_url)).rstrip("/")
        self.model: str = model
        self.timeout: float = float(timeout)
        self.connect_timeout: float = float(connect_timeout)
        self.max_retries: int = int(max_retries)
        self._credentials = Credentials.inference(token, key_file)
        self._management = ManagementCredentials(management_token, key_file)
        self._open()

    def _require_transport(self) -> None:
        """Raise ``MissingDependencyError`` if the transport's library is not installed (checked first)."""

    def _open(self) -> None:
        """Create the transport's connection pool (last, once the configuration is valid)."""
        raise NotImplementedError

    def _stylize_request(self, content: ImageInput, style: StyleInput, kwargs: Mapping[str, Any], *,
                         stream: bool = False) -> Request:
        """``POST /predictions/<model>`` with the body of ``stylize(content, style, **kwargs)``
        (:func:`~nst_client._request.stylize_body`); reads and encodes the input images.

        Raises:
            TypeError, FileNotFoundError, ValueError: Bad local input (see ``stylize``).
        """
        images, params = split_stylize_args(kwargs, stream=stream)
        data, sent = stylize_body(content, style, **images, params=params)
        return Request("POST", f"{self.base_url}/predictions/{self.model}", self._credentials,
                       read_timeout_for(sent, self.timeout), data, stream=stream)

    def _health_request(self) -> Request:
        """``GET /ping`` on the inference API."""
        return Request("GET", f"{self.base_url}/ping", self._credentials, self.timeout)

    def _info_request(self) -> Request:
        """``GET /models/<model>?customized=true`` on the management API, with the management key.

        Raises:
            FileNotFoundError: An explicitly named key file does not exist.
            KeyFileError: The key file has no management key.
        """
        return Request("GET", f"{self.management_url}/models/{self.model}?customized=true",
                       self._management.get(), self.timeout)

    def __repr__(self) -> str:
        auth = "set" if self._credentials.token else "none"
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, token={auth})"
