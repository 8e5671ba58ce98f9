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
from ._request import (
    Request,
    job_body,
    plan_params,
    read_timeout_for,
    refuse_dry_run,
    split_stylize_args,
    stylize_body,
)

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
            TypeError, FileNotFoundError, ValueError: Bad local input (see ``stylize``), or
                ``dry_run`` set (that is :meth:`_plan_request`'s).
        """
        images, params = split_stylize_args(kwargs, stream=stream)
        refuse_dry_run(params, "stylize_stream" if stream else "stylize")
        data, sent = stylize_body(content, style, **images, params=params)
        return Request("POST", self._predictions_url(), self._credentials,
                       read_timeout_for(sent, self.timeout), data, stream=stream)

    def _submit_request(self, content: ImageInput, style: StyleInput, kwargs: Mapping[str, Any]) -> Request:
        """``POST /predictions/<model>`` submitting ``stylize(content, style, **kwargs)`` as a job:
        the same body with ``job = {"action": "submit"}``, answered at once (read timeout
        ``timeout``, not shortened by ``time_budget_s``).

        Raises:
            TypeError, FileNotFoundError, ValueError: Bad local input (see ``stylize``); a job
                is never streamed (``stream`` given) nor a dry run (``dry_run`` set).
        """
        images, params = split_stylize_args(kwargs)
        if params.get("stream") is not None:
            raise ValueError("stream: a job is not streamed; follow it with status() or events()")
        refuse_dry_run(params, "submit")
        data, _ = stylize_body(content, style, **images, params=params, job={"action": "submit"})
        return Request("POST", self._predictions_url(), self._credentials, self.timeout, data)

    def _plan_request(self, content: ImageInput, style: StyleInput, kwargs: Mapping[str, Any]) -> Request:
        """``POST /predictions/<model>`` asking for the plan of ``stylize(content, style, **kwargs)``:
        the same body with ``params.dry_run = true`` (:func:`~nst_client._request.plan_params`),
        answered at once (read timeout ``timeout``, not shortened by ``time_budget_s``).

        Raises:
            TypeError, FileNotFoundError, ValueError: Bad local input (see ``stylize``); a plan
                is never streamed (``stream`` given).
        """
        images, params = split_stylize_args(kwargs)
        data, _ = stylize_body(content, style, **images, params=plan_params(params))
        return Request("POST", self._predictions_url(), self._credentials, self.timeout, data)

    def _job_request(self, action: str, job_id: str, *, timeout: Optional[float] = None,
                     max_retries: Optional[int] = None) -> Request:
        """``POST /predictions/<model>`` with ``{"job": {"action": action, "id": job_id}}``.

        Args:
            action: ``"status"``, ``"result"`` or ``"cancel"``.
            job_id: The job's id.
            timeout: Read timeout of this call (default: the client's ``timeout``).
            max_retries: Retries of this call (default: the client's ``max_retries``).

        Raises:
            ValueError: ``job_id`` is not a non-empty string.
        """
        return Request("POST", self._predictions_url(), self._credentials,
                       self.timeout if timeout is None else float(timeout), job_body(action, job_id),
                       max_retries=max_retries)

    def _retries(self, request: Request) -> int:
        """How many times ``request`` may be retried: its own ``max_retries``, else the client's."""
        return self.max_retries if request.max_retries is None else request.max_retries

    def _predictions_url(self) -> str:
        return f"{self.base_url}/predictions/{self.model}"

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
