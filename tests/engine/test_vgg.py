"""VGG16/VGG19 layer naming, input conventions, feature extraction and truncation."""

from __future__ import annotations

import pytest
import torch
from nst.vgg import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYER_INDEX,
    VGG16_LAYERS,
    VGG19_LAYERS,
    VGG_MEAN_BGR,
    FeatureExtractor,
    VGGFeatures,
    build_features,
    build_vgg19_features,
    check_layer_names,
    min_side,
)
from torch import nn


def test_layer_names_follow_torchvision_order(features: VGGFeatures) -> None:
    assert len(VGG19_LAYERS) == 37 == len(features)
    assert len(set(VGG19_LAYERS)) == 37
    expected = {"conv1_1": 0, "relu1_1": 1, "pool1": 4, "conv4_2": 21, "relu4_2": 22, "relu5_1": 29, "pool5": 36}
    assert {name: LAYER_INDEX[name] for name in expected} == expected
    assert all(VGG19_LAYERS[i] == name for name, i in LAYER_INDEX.items())
    # The names match the module types of torchvision's vgg19().features.
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, module in zip(VGG19_LAYERS, features):
        assert isinstance(module, kinds[name.rstrip("0123456789_")]), name
    # Output channels per block: 64, 128, 256, 512, 512.
    for name, module in zip(VGG19_LAYERS, features):
        if name.startswith("conv"):
            assert module.out_channels == {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(name[4])], name


def test_build_loads_the_state_and_freezes(random_state: dict, features: VGGFeatures) -> None:
    assert not features.training
    assert all(not p.requires_grad for p in features.parameters())
    for key, value in features.state_dict().items():
        assert torch.equal(value, random_state[key]), key
    with pytest.raises(RuntimeError):
        build_vgg19_features({"0.weight": torch.zeros(64, 3, 3, 3)})


def test_relus_are_not_in_place(features: VGGFeatures) -> None:
    relus = [m for m in features if isinstance(m, nn.ReLU)]
    assert len(relus) == 16
    assert all(not m.inplace for m in relus)
    # The observable consequence: a captured conv output keeps its negative values.
    out = FeatureExtractor(features, ["conv1_1", "relu1_1"])(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert (out["conv1_1"] < 0).any()
    torch.testing.assert_close(out["relu1_1"], out["conv1_1"].clamp(min=0))


def test_extractor_returns_requested_layers_with_shapes(features: VGGFeatures) -> None:
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    layers = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS
    out = FeatureExtractor(features, layers)(image)
    assert set(out) == set(layers)
    shapes = {name: tuple(t.shape) for name, t in out.items()}
    assert shapes == {
        "relu4_2": (1, 512, 8, 8),
        "relu1_1": (1, 64, 64, 64),
        "relu2_1": (1, 128, 32, 32),
        "relu3_1": (1, 256, 16, 16),
        "relu4_1": (1, 512, 8, 8),
        "relu5_1": (1, 512, 4, 4),
    }


def test_extractor_output_matches_running_the_network(features: VGGFeatures) -> None:
    image = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(2))
    ex = FeatureExtractor(features, ["relu3_1"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = features[: LAYER_INDEX["relu3_1"] + 1]((image - mean) / std)
    torch.testing.assert_close(ex(image)["relu3_1"], expected)


@pytest.mark.parametrize("layers", [["relu1_1"], ["conv3_2", "relu1_2"], ["relu4_2"], list(DEFAULT_STYLE_LAYERS), ["pool5"]])
def test_extractor_is_truncated_after_the_deepest_layer(features: VGGFeatures, layers: list[str]) -> None:
    ex = FeatureExtractor(features, layers)
    assert len(ex.net) == max(LAYER_INDEX[n] for n in layers) + 1
    # The modules are shared with the full network, not copied.
    assert all(a is b for a, b in zip(ex.net, features))


def test_unknown_layer_lists_valid_names(features: VGGFeatures) -> None:
    with pytest.raises(ValueError, match="conv6_1") as info:
        FeatureExtractor(features, ["relu1_1", "conv6_1"])
    assert "conv1_1" in str(info.value) and "pool5" in str(info.value)
    with pytest.raises(ValueError):
        check_layer_names(["relu4_2", "fc7"])
    with pytest.raises(ValueError):
        FeatureExtractor(features, [])


def test_min_side() -> None:
    assert min_side(DEFAULT_STYLE_LAYERS) == 16
    assert min_side(["relu1_1"]) == 1
    assert min_side(["pool1"]) == 2
    assert min_side(["relu4_2"]) == 8
    assert min_side(["pool5"]) == 32
    with pytest.raises(ValueError):
        min_side(["nope"])


def test_image_below_min_side_is_refused_with_a_clear_message(features: VGGFeatures) -> None:
    ex = FeatureExtractor(features, DEFAULT_STYLE_LAYERS)
    assert ex.min_side == 16
    with pytest.raises(ValueError, match=r"8x8 pixels.*relu5_1.*at least 16 pixels"):
        ex(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="15"):
        ex(torch.rand(1, 3, 64, 15))  # one side too small is enough
    # The boundary itself works: relu5_1 is 1x1 at 16x16.
    assert ex(torch.rand(1, 3, 16, 16))["relu5_1"].shape == (1, 512, 1, 1)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 32, 32), (1, 4, 32, 32), (1, 3, 1, 32, 32)])
def test_extractor_refuses_wrong_shapes(features: VGGFeatures, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected an image of shape"):
        FeatureExtractor(features, ["relu1_1"])(torch.rand(shape))


def test_features_run_channels_last_with_the_nchw_values(features: VGGFeatures) -> None:
    """The network runs NHWC (weights and activations, for speed); values are those of NCHW."""
    import copy

    conv1_1 = features[0]
    assert isinstance(conv1_1, nn.Conv2d) and conv1_1.weight.is_contiguous(memory_format=torch.channels_last)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ours = FeatureExtractor(features, ["relu2_1"])(image)["relu2_1"]
    assert ours.is_contiguous(memory_format=torch.channels_last)
    nchw = nn.Sequential(*copy.deepcopy(list(features)[: LAYER_INDEX["relu2_1"] + 1]))
    nchw.to(memory_format=torch.contiguous_format)  # in place, as Module.to is
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = nchw((image - mean) / std)
    assert expected.is_contiguous()
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-5)


# --- two networks, two input conventions ---------------------------------------------------------

def test_vgg16_layer_names_follow_torchvision_order() -> None:
    features = build_features(network="vgg16")
    assert len(VGG16_LAYERS) == 31 == len(features) and features.layer_names == VGG16_LAYERS
    assert features.network == "vgg16"
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, module in zip(VGG16_LAYERS, features):
        assert isinstance(module, kinds[name.rstrip("0123456789_")]), name
    assert {n: features.layer_index[n] for n in ("relu4_2", "pool3", "relu5_3", "pool5")} == {
        "relu4_2": 20, "pool3": 16, "relu5_3": 29, "pool5": 30}
    assert set(VGG16_LAYERS) < set(VGG19_LAYERS)
    assert set(VGG19_LAYERS) - set(VGG16_LAYERS) == {"conv3_4", "relu3_4", "conv4_4", "relu4_4", "conv5_4", "relu5_4"}
    assert isinstance(features[:3], nn.Sequential) and not isinstance(features[:3], type(features))


def test_vgg16_extractor_refuses_vgg19_only_layers_listing_its_own() -> None:
    features = build_features(network="vgg16")
    out = FeatureExtractor(features, ["relu4_2", "relu5_3"])(torch.rand(1, 3, 32, 32))
    assert tuple(out["relu5_3"].shape) == (1, 512, 2, 2)
    with pytest.raises(ValueError, match="unknown VGG16 layer") as info:
        FeatureExtractor(features, ["relu5_4"])
    assert "relu5_3, pool5" in str(info.value) and "relu5_4" not in str(info.value).split("valid names:")[1]
    with pytest.raises(ValueError, match="network must be one of"):
        build_features(network="vgg11")


def test_min_side_is_the_same_on_both_networks() -> None:
    assert min_side(["relu5_1"]) == 16 and min_side(["pool5"]) == 32 and min_side(["relu3_3"]) == 4


def test_caffe_convention_feeds_bgr_0_255_minus_the_vgg_mean(random_state) -> None:
    """The extractor applies the weights' convention: the first layer of a ``caffe`` network
    sees ``image[:, ::-1] * 255 - VGG_MEAN_BGR``, of a ``torchvision`` one ``(image - mean) / std``."""
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    conv = build_vgg19_features(random_state)[0]
    for convention, expected_input in (
        ("caffe", image.flip(1) * 255 - torch.tensor(VGG_MEAN_BGR).view(1, 3, 1, 1)),
        ("torchvision", (image - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)),
    ):
        features = build_features(random_state, network="vgg19", input_convention=convention)
        out = FeatureExtractor(features, ["conv1_1"])(image)["conv1_1"]
        torch.testing.assert_close(out, conv(expected_input.contiguous(memory_format=torch.channels_last)),
                                   rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="input convention must be one of"):
        build_features(random_state, input_convention="rgb255")


def test_head_then_tail_is_the_forward_pass_split_after_a_layer(features: VGGFeatures) -> None:
    image = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(3))
    layers = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS
    ex = FeatureExtractor(features, layers)
    head, x = ex.head(image, "pool2")
    assert set(head) == {"relu1_1", "relu2_1"} and tuple(x.shape) == (1, 128, 16, 12)
    tail = ex.tail(x, "pool2")
    assert set(tail) == {"relu3_1", "relu4_1", "relu4_2", "relu5_1"}
    whole = ex(image)
    for name in layers:
        torch.testing.assert_close({**head, **tail}[name], whole[name], rtol=0, atol=0)
    for bad in ("relu5_1", "pool5"):  # the deepest, and one past it: no tail to run
        with pytest.raises(ValueError, match="not a layer before relu5_1"):
            ex.head(image, bad)
