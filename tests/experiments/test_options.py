"""KEY=VALUE strategy options: JSON values where they parse, text otherwise, errors naming the flag."""

from __future__ import annotations

import pytest

from torch_lottery.experiments.options import parse_option, parse_options


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rate=0.5", ("rate", 0.5)),
        ("every=100", ("every", 100)),
        ("regrow=true", ("regrow", True)),
        ("extra=null", ("extra", None)),
        ("densities=[0.1, 0.02]", ("densities", [0.1, 0.02])),
        ("criterion=magnitude", ("criterion", "magnitude")),
        ("name=a=b", ("name", "a=b")),
        (" rate =0.5", ("rate", 0.5)),
        ("note=", ("note", "")),
        ("rate=NaN", ("rate", "NaN")),
        ("rate=Infinity", ("rate", "Infinity")),
    ],
)
def test_parse_option_reads_json_values_and_keeps_text(text, expected):
    assert parse_option(text) == expected


@pytest.mark.parametrize("text", ["rate", "=0.5", "1rate=0.5", "a-b=1", ""])
def test_parse_option_refuses_malformed_text_naming_the_flag(text):
    with pytest.raises(ValueError, match=r"--strategy-option .*KEY=VALUE"):
        parse_option(text)


def test_parse_option_refuses_non_text():
    with pytest.raises(TypeError, match=r"--opt must be KEY=VALUE text, got 3"):
        parse_option(3, "--opt")


def test_parse_options_keeps_order_and_refuses_a_repeated_key():
    assert list(parse_options(["b=1", "a=2"])) == ["b", "a"]
    with pytest.raises(ValueError, match=r"--strategy-option 'rate' is given twice \(0.5 and 0.2\)"):
        parse_options(["rate=0.5", "rate=0.2"])
