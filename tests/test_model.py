import pytest
import torch

from lab6.labels import encode_many
from lab6.model import ConditionalUNet

TINY = dict(sample_size=16, block_out_channels=(16, 32), attention_levels=(False, True), layers_per_block=1,
            attention_head_dim=16, norm_num_groups=8, cross_attention_dim=32)


@pytest.mark.parametrize("conditioning", ["add", "cross_attention"])
def test_save_load_round_trip_is_exact(tmp_path, conditioning):
    torch.manual_seed(0)
    model = ConditionalUNet(conditioning=conditioning, **TINY).eval()
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([1, 500, 999])
    c = torch.from_numpy(encode_many([["red cube"], ["gray sphere", "cyan cube"], ["blue cylinder"]]))
    with torch.no_grad():
        before = model(x, t, c)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ConditionalUNet.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.conditioning == conditioning
    with torch.no_grad():
        assert torch.equal(before, loaded(x, t, c))


@pytest.mark.parametrize("conditioning", ["add", "cross_attention"])
def test_condition_changes_output(conditioning):
    torch.manual_seed(0)
    model = ConditionalUNet(conditioning=conditioning, **TINY).eval()
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([500])
    with torch.no_grad():
        a = model(x, t, torch.from_numpy(encode_many([["red cube"]])))
        b = model(x, t, torch.from_numpy(encode_many([["blue sphere"]])))
    assert not torch.allclose(a, b)


def test_label_tokens_are_the_present_labels_then_padding():
    model = ConditionalUNet(conditioning="cross_attention", **TINY)
    c = torch.from_numpy(encode_many([["yellow cylinder", "gray cube"], ["red sphere"]]))
    c = torch.cat([c, torch.zeros(1, 24)])  # the null condition
    assert model.condition_tokens(c).tolist() == [[0, 23, 24, 24, 24], [9, 24, 24, 24, 24], [24] * 5]


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="conditioning must be one of"):
        ConditionalUNet(conditioning="concat", **TINY)
    with pytest.raises(ValueError, match="one flag per level"):
        ConditionalUNet(**{**TINY, "attention_levels": (True,)})
    with pytest.raises(ValueError, match="detail_chroma splits detail_skip's gain in two: it needs detail_skip=True"):
        ConditionalUNet(**{**TINY, "patch_size": 2, "full_res_channels": 8, "detail_chroma": True})


def test_a_head_with_a_colour_gain_scales_the_grey_and_the_colour_part_of_the_detail_apart(tmp_path):
    """``detail_chroma``: the noisy image's in-patch detail is split into its mean over colours (grey, times
    ``detail_gain``) and the rest (colour, times ``detail_chroma_gain``); the gains are saved with the weights."""
    from lab6.model import patch_detail

    model = ConditionalUNet(**{**TINY, "patch_size": 2, "full_res_channels": 8, "detail_skip": True,
                               "detail_chroma": True})
    head = model.full_res_head  # its last convolution starts at zero: the gains are all it adds
    head.detail_gain.fill_(2.0)
    head.detail_chroma_gain.fill_(-3.0)
    generator = torch.Generator().manual_seed(0)
    grey = patch_detail(torch.randn(2, 1, 16, 16, generator=generator), 2).expand(2, 3, 16, 16)
    colour = patch_detail(torch.randn(2, 3, 16, 16, generator=generator), 2)
    colour = colour - colour.mean(dim=1, keepdim=True)
    blocks = torch.randn(2, 3, 8, 8, generator=generator).repeat_interleave(2, 2).repeat_interleave(2, 3)
    with torch.no_grad():
        out = head(blocks + grey + colour, torch.zeros(2, 3, 16, 16), torch.tensor([3, 700]))
    torch.testing.assert_close(out, 2.0 * grey - 3.0 * colour)
    model.save_pretrained(tmp_path / "m")
    loaded = ConditionalUNet.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.full_res_head.detail_chroma_gain, head.detail_chroma_gain)


@pytest.mark.parametrize("name, millions", [("paper", 113.9), ("cpu", 3.9), ("cpu-add", 2.8)])
def test_presets_build_the_documented_model_sizes(name, millions):
    from lab6.config import preset

    with torch.device("meta"):  # the shapes alone: no memory for the paper preset's weights
        model = ConditionalUNet(**preset(name).model_config())
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)
