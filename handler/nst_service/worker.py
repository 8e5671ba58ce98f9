"""What one worker holds once loaded: the served weights on its device, the configuration
(limits, defaults), the memory budget, the measured speed, the style-target cache and the job
desk. :func:`load_worker` does the wiring once, at start-up."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from nst.cache import StyleCache
from nst.vgg import VGGFeatures
from nst.weights import PROVENANCE_FILE, Provenance, load_features, read_provenance
from nst_http.budget import Budget, SpeedCurve, measure_budget, measure_speed
from nst_http.desk import JobDesk
from nst_http.errors import RequestError
from nst_http.jobs import JobSettings
from nst_http.params import Limits, limits_from_config, parse_params

from .exchange import Metric

logger = logging.getLogger(__name__)

#: Entries of the style-target LRU cache when ``handler.style_cache_size`` is not set.
STYLE_CACHE_SIZE = 32


@dataclass
class Worker:
    """One loaded worker (see :func:`load_worker`)."""

    limits: Limits
    defaults: dict[str, Any]
    """``handler.defaults`` as configured (request parameters)."""
    effective_defaults: dict[str, Any]
    """Every parameter's default in force (the configured ones over the declared ones)."""
    provenance: Provenance
    device: torch.device
    features: VGGFeatures
    budget: Budget
    speed_curve: SpeedCurve
    style_cache: StyleCache
    desk: JobDesk
    metric: Metric

    def describe(self) -> str:
        """``customizedMetadata`` of ``GET /models/nst?customized=true`` (JSON text): the served
        weights' provenance, the network's layer names, the device, the limits (the memory
        budget as in force: configured, or the device's share) and the effective defaults."""
        limits = asdict(self.limits) | {"memory_budget_mb": self.budget.total // 2**20}
        return json.dumps({"weights": asdict(self.provenance), "layers": list(self.features.layer_names),
                           "device": str(self.device), "limits": limits, "defaults": self.effective_defaults})


def worker_device(gpu_id: int | None) -> torch.device:
    """The device of a worker that TorchServe gave ``gpu_id`` (``None`` on a CPU host):
    ``cuda:<gpu_id>`` where CUDA is available, else the CPU."""
    return torch.device(f"cuda:{gpu_id}" if gpu_id is not None and torch.cuda.is_available() else "cpu")


def load_worker(model_dir: Path, weights_file: str, config: dict[str, Any], *, gpu_id: int | None, name: str,
                metric: Metric) -> Worker:
    """Load the VGG features (the network and input convention their provenance records) from
    ``model_dir / weights_file`` onto ``cuda:<gpu_id>`` or the CPU (``weights_only=True``, so the
    archive cannot run code on load), open the job desk, and time the start-up runs.

    Args:
        config: the ``handler:`` section of ``model-config.yaml``: ``limits``
            (:class:`nst_http.params.Limits` fields), ``defaults`` (parameter defaults),
            ``torch_threads``, ``style_cache_size`` (0 disables the cache) and ``jobs``.
        name: this worker's name, ``"<host>:<slot>"``, the same after a restart.
        metric: the metrics hook.

    Raises:
        ValueError: the weights file does not match its provenance, or the handler config is invalid.
    """
    defaults = dict(config.get("defaults", {}))
    provenance = read_provenance(model_dir / PROVENANCE_FILE)
    try:
        limits = limits_from_config(config.get("limits", {}))
    except RequestError as exc:  # both spellings of one limit
        raise ValueError(f"model-config.yaml: {exc.message}") from None
    try:  # unknown names, bad values and layers the served network lacks fail here
        effective = parse_params(defaults, limits=limits, network=provenance.network)
    except RequestError as exc:
        raise ValueError(f"model-config.yaml handler.defaults: {exc.message}") from None
    if config.get("torch_threads"):
        torch.set_num_threads(int(config["torch_threads"]))
    device = worker_device(gpu_id)
    features = load_features(model_dir / weights_file, provenance).to(device)
    budget = measure_budget(limits.memory_budget_mb, device)
    desk = JobDesk(JobSettings.from_config(config.get("jobs") or {}, os.environ), name, str(device),
                   on_state=lambda state: metric("NSTJobs", 1, State=state),
                   on_wait=lambda s: metric("NSTJobQueueSeconds", s, kind="gauge", unit="Seconds"))
    speed_curve, *first = measure_speed(features, device)  # figures for the first estimates
    desk.measured(*first)
    worker = Worker(limits, defaults, effective, provenance, device, features, budget, speed_curve,
                    StyleCache(int(config.get("style_cache_size", STYLE_CACHE_SIZE))), desk, metric)
    logger.info("NST model loaded: weights %s (%s, %s input) on %s, %d torch threads, memory budget %.1f GiB "
                "(%.1f GiB held), %.3g s per megapixel-iteration at %d px, x (pixels / that) ^ %.3f",
                provenance.label, provenance.network, provenance.input_convention, device, torch.get_num_threads(),
                budget.total / 2**30, budget.baseline / 2**30, (desk.seconds_per_work or 0) * 1e6,
                speed_curve.reference, speed_curve.exponent)
    return worker
