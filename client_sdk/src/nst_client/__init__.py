"""Python client SDK for the neural-style-transfer TorchServe service.

Example::

    from nst_client import StyleTransferClient

    with StyleTransferClient(base_url="http://127.0.0.1:8080") as client:
        result = client.stylize("content.jpg", "style.jpg", image_size=256, steps=100)
        result.save("out.png")

:class:`AsyncStyleTransferClient` is the same client for ``asyncio`` (the ``async`` extra:
``pip install 'nst-client[async]'``); ``info()`` on either describes the served model.
"""

from ._async import AsyncStyleTransferClient
from ._client import StyleTransferClient
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    KeyFileError,
    MissingDependencyError,
    NotFoundError,
    NSTError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from ._stream import PreviewEvent, ProgressEvent, ResultEvent, StreamEvent
from ._types import (
    ColorControl,
    ImageInput,
    InitMode,
    ModelInfo,
    OptimizerName,
    OutputFormat,
    Pooling,
    RenderMode,
    StyleInput,
    StylizeResult,
)
from ._version import __version__

__all__ = [
    "__version__",
    "StyleTransferClient",
    "AsyncStyleTransferClient",
    "StylizeResult",
    "ModelInfo",
    "StreamEvent",
    "ProgressEvent",
    "PreviewEvent",
    "ResultEvent",
    "ImageInput",
    "StyleInput",
    "InitMode",
    "ColorControl",
    "Pooling",
    "OptimizerName",
    "RenderMode",
    "OutputFormat",
    "NSTError",
    "KeyFileError",
    "MissingDependencyError",
    "APIResponseValidationError",
    "APIConnectionError",
    "APITimeoutError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
]
