"""cancel: a run stops within one iteration of the event being set, with the image so far."""

from __future__ import annotations

import threading

import pytest
from nst.records import Stopping
from nst.stylize import Iterate, StylizeOptions, stylize
from nst.vgg import VGGFeatures


def cancel_at(iteration: int, event: threading.Event):
    """A progress callback that sets ``event`` once the run reports ``iteration``."""
    def callback(it: Iterate) -> None:
        if it.iteration >= iteration:
            event.set()
    return callback


@pytest.mark.parametrize("scales", [(), (32, 64)])
def test_cancel_stops_within_one_iteration_with_a_full_size_image(load_image, features: VGGFeatures, scales) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    event = threading.Event()
    result = stylize(content, style, features, StylizeOptions(iterations=40, scales=scales), stopping=Stopping(cancel=event),
                     callback=cancel_at(3, event))
    # Evaluation 3 happens inside the 4th update; the loop stops before the 5th.
    assert result.stopped == "cancelled" and result.iterations == 4
    assert [it.iteration for it in result.history] == [1, 2, 3, 4]
    assert result.history[-1].losses == result.losses and result.history[-1].level == len(scales or (64,)) - 1
    assert result.image.shape == content.shape and 0 <= result.image.min() and result.image.max() <= 1


def test_an_event_set_before_the_run_still_runs_one_iteration(load_image, features: VGGFeatures) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    event = threading.Event()
    event.set()
    result = stylize(content, style, features, StylizeOptions(iterations=10), stopping=Stopping(cancel=event))
    assert (result.stopped, result.iterations, len(result.history)) == ("cancelled", 1, 1)


def test_an_unset_event_changes_nothing(load_image, features: VGGFeatures) -> None:
    content, style = load_image("tubingen_64x64.png"), load_image("starry_night_64x64.png")
    plain = stylize(content, style, features, StylizeOptions(iterations=3))
    watched = stylize(content, style, features, StylizeOptions(iterations=3), stopping=Stopping(cancel=threading.Event()))
    assert watched.stopped == "iterations" and watched.iterations == 3
    assert (watched.image == plain.image).all() and watched.losses == plain.losses
