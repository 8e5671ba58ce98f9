"""The style-transfer service of one worker, TorchServe-free: it loads the weights, holds the
worker's memory budget, speed and job desk, and answers the requests of a batch stage by stage
(:class:`StyleTransferService`). ``nst_handler.py`` maps TorchServe's context onto it."""

from .exchange import BatchRequest, Chunk, Metric, Reply, Send
from .service import StyleTransferService
from .worker import Worker, worker_device

__all__ = ["BatchRequest", "Chunk", "Metric", "Reply", "Send", "StyleTransferService", "Worker", "worker_device"]
