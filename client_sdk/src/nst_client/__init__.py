"""Python client SDK for the neural-style-transfer TorchServe service.

Example::

    from nst_client import StyleTransferClient

    with StyleTransferClient(base_url="http://127.0.0.1:8080") as client:
        result = client.stylize("content.jpg", "style.jpg", image_size=256, iterations=100)
        result.save("out.png")

:class:`AsyncStyleTransferClient` is the same client for ``asyncio`` (the ``async`` extra:
``pip install 'nst-client[async]'``); ``info()`` on either describes the served model, and
``submit()`` starts a :class:`Job` to follow, cancel or fetch later, and ``plan()`` returns the
server's :class:`Plan` of a request (sizes, tiles, memory, seconds) without running it.
:func:`stylize_many` runs many ``stylize`` calls N at a time over one client (threads, on the
base install).
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
    JobNotFinishedError,
    KeyFileError,
    MissingDependencyError,
    NotFoundError,
    NSTError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from ._images import ImageInput, StyleInput
from ._jobs import AsyncJob, Job, JobStatus
from ._many import StylizeCall, StylizeOutcome, stylize_many
from ._params import (
    ColorControl,
    InitMode,
    OptimizerName,
    OutputFormat,
    Pooling,
    Precision,
    RenderMode,
    StyleLoss,
    StylizeParams,
)
from ._plan import Plan, PlanLevel
from ._results import ModelInfo, StylizeResult
from ._stream import PreviewEvent, ProgressEvent, ResultEvent, StreamEvent
from ._version import __version__

__all__ = [
    "__version__",
    "StyleTransferClient",
    "AsyncStyleTransferClient",
    "stylize_many",
    "StylizeCall",
    "StylizeOutcome",
    "StylizeResult",
    "ModelInfo",
    "Plan",
    "PlanLevel",
    "Job",
    "AsyncJob",
    "JobStatus",
    "StreamEvent",
    "ProgressEvent",
    "PreviewEvent",
    "ResultEvent",
    "ImageInput",
    "StyleInput",
    "StylizeParams",
    "InitMode",
    "ColorControl",
    "Pooling",
    "StyleLoss",
    "OptimizerName",
    "Precision",
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
    "JobNotFinishedError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
]
