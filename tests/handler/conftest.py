"""Workers started here share one speed measurement per device (see ``speed_measured_once``)."""

from speed import one_speed_measurement  # noqa: F401  (the session fixture)
