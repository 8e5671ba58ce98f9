"""Every default used by the SDK and the CLI, in one place."""

from __future__ import annotations

from typing import FrozenSet

# Where the service lives.
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_MODEL = "nst"

# Environment variables, in the order they are consulted (after explicit arguments).
ENV_BASE_URL = "NST_URL"
ENV_MANAGEMENT_URL = "NST_MANAGEMENT_URL"
ENV_TOKEN = "NST_TOKEN"
ENV_KEY_FILE = "NST_KEY_FILE"

# TorchServe's management API listens on this port by default; ``management_url`` defaults to
# the inference URL's scheme and host with this port.
DEFAULT_MANAGEMENT_PORT = 8081

# TorchServe writes this file into the directory it was started from.
DEFAULT_KEY_FILE = "key_file.json"
KEY_FILE_SECTION = "inference"

# Timeouts, in seconds. Style transfer on CPU can take minutes, so reads are generous.
DEFAULT_TIMEOUT = 900.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# With params.time_budget_s, the read timeout is the budget plus this margin (seconds): room
# for decoding, building the loss targets, the last iteration, encoding and queueing.
DEADLINE_READ_MARGIN = 60.0

# Retries: capped exponential backoff with jitter, honouring Retry-After.
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5  # seconds, before the first retry
MAX_RETRY_DELAY = 8.0  # seconds, cap of the computed backoff
MAX_RETRY_AFTER = 60.0  # seconds; a larger Retry-After is ignored in favour of backoff
RETRY_JITTER = 0.25  # the delay is reduced by up to this fraction at random
RETRYABLE_STATUS_CODES: FrozenSet[int] = frozenset({429, 502, 503, 504})
# ...except TorchServe's 503 "Prediction failed": the handler itself broke on this request, so
# sending the same minutes-long job again would most likely fail again.
NON_RETRYABLE_TORCHSERVE_TYPES: FrozenSet[str] = frozenset({"InternalServerException"})
# TorchServe answers 507 (or 500) "Worker died." when the worker process dies mid-request (it then
# restarts it): the request itself may be fine, so it is retried. Our own 507 (out_of_memory)
# is not.
RETRYABLE_TORCHSERVE_MESSAGES: FrozenSet[str] = frozenset({"Worker died."})

# Streamed progress (params.stream): the server answers newline-delimited JSON events.
NDJSON_CONTENT_TYPE = "application/x-ndjson"
STREAM_CHUNK_SIZE = 64 * 1024  # bytes read at most per socket read while streaming
# CLI: preview interval (iterations) when --save-previews is given without --preview-every,
# and the name of each preview file in that directory.
DEFAULT_CLI_PREVIEW_EVERY = 10
PREVIEW_FILENAME = "preview_{iteration:05d}.jpg"
#: ``params.preview_size`` for full-size previews: its largest value. The server never enlarges a
#: preview, so each comes at the size of the level being optimized (the output's at the last).
FULL_SIZE_PREVIEW = 8192
# The optional extra that brings tqdm (stylize(progress=True), CLI --progress).
PROGRESS_EXTRA_INSTALL = "pip install 'nst-client[progress]'"
# The optional extra that brings httpx (AsyncStyleTransferClient).
ASYNC_EXTRA_INSTALL = "pip install 'nst-client[async]'"

# TorchServe answers a bad/missing token with HTTP 400 and this "type".
TORCHSERVE_INVALID_KEY_TYPE = "InvalidKeyException"

# How much of a non-JSON error body is kept in the error message (characters).
MAX_ERROR_TEXT = 500

# Jobs: seconds between two status polls of Job.wait()/events() (each poll renews the job's
# lease), and the read timeout of the best-effort cancel the CLI sends on Ctrl-C (no retries).
DEFAULT_JOB_POLL_S = 1.0
CLI_CANCEL_TIMEOUT = 5.0
