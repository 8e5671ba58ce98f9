"""``docs/migrating.md`` ("Coming from another tool") maps the flags of jcjohnson/neural-style
(JJ), ProGamerGov/neural-style-pt (NSPT) and crowsonkb/style-transfer-pytorch (KC) to this
service's parameters. Checked here: every ``params.NAME`` it names is a request parameter (and a
``params.NAME: "value"`` one of its choices), and each tool has a table whose rows are exactly the
flags of the release the page cites, each once, and then rows for what the tool's code fixes
without a flag (first cell ``(no flag) ...``), each mapped to a request parameter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nst_http.params import PARAMS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "migrating.md"
HEADER = ["their flag (default)", "ours", "notes"]
#: How a row for something the tool does without a flag (KC's W2 style loss) starts.
NO_FLAG = "(no flag) "

#: Every flag of each tool's release, as its source declares them (the versions the page cites).
FLAGS: dict[str, tuple[str, ...]] = {
    # jcjohnson/neural-style 07c4b82, neural_style.lua: every cmd:option.
    "JJ": ("-style_image", "-style_blend_weights", "-content_image", "-image_size", "-gpu", "-multigpu_strategy",
           "-content_weight", "-style_weight", "-tv_weight", "-num_iterations", "-normalize_gradients", "-init",
           "-init_image", "-optimizer", "-learning_rate", "-lbfgs_num_correction", "-print_iter", "-save_iter",
           "-output_image", "-style_scale", "-original_colors", "-pooling", "-proto_file", "-model_file",
           "-backend", "-cudnn_autotune", "-seed", "-content_layers", "-style_layers"),
    # ProGamerGov/neural-style-pt v1.0.0, neural_style.py: every parser.add_argument; plus
    # -download_models of the pip package neural-style 0.5.7 (branch pip-master).
    "NSPT": ("-style_image", "-style_blend_weights", "-content_image", "-image_size", "-gpu", "-content_weight",
             "-style_weight", "-normalize_weights", "-normalize_gradients", "-tv_weight", "-num_iterations",
             "-init", "-init_image", "-optimizer", "-learning_rate", "-lbfgs_num_correction", "-print_iter",
             "-save_iter", "-output_image", "-style_scale", "-original_colors", "-pooling", "-model_file",
             "-disable_check", "-backend", "-cudnn_autotune", "-seed", "-content_layers", "-style_layers",
             "-multidevice_strategy", "-download_models"),
    # crowsonkb/style-transfer-pytorch e7e2c71, style_transfer/cli.py: every p.add_argument (the
    # long name; the table gives the short one beside it).
    "KC": ("content", "styles", "--output", "--style-weights", "--devices", "--random-seed", "--content-weight",
           "--tv-weight", "--optimizer", "--min-scale", "--end-scale", "--iterations", "--initial-iterations",
           "--save-every", "--step-size", "--avg-decay", "--init", "--style-scale-fac", "--style-size", "--pooling",
           "--proof", "--web", "--host", "--port", "--browser"),
}


def text() -> str:
    return DOC.read_text()


def sections() -> dict[str, list[str]]:
    """The page's ``## `` sections: heading -> its lines."""
    found: dict[str, list[str]] = {}
    heading = ""
    for line in text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            found[heading] = []
        elif heading:
            found[heading].append(line)
    return found


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def tool_table(tool: str) -> list[list[str]]:
    """The rows (cells) of the flag table in the section whose heading ends with ``(TOOL)``."""
    heads = [h for h in sections() if h.endswith(f"({tool})")]
    assert len(heads) == 1, f"docs/migrating.md needs one section headed '... ({tool})', found {heads}"
    lines = [line for line in sections()[heads[0]] if line.startswith("|")]
    assert lines and cells(lines[0]) == HEADER, f"{tool}: the section's table must have the columns {HEADER}"
    assert set(lines[1].replace("|", "").strip()) <= set("-: "), f"{tool}: no separator row under the header"
    rows = [cells(line) for line in lines[2:]]
    for row in rows:
        assert len(row) == 3 and all(row), f"{tool}: a row without three filled cells: {row}"
    return rows


@pytest.mark.parametrize("tool", list(FLAGS))
def test_each_tool_has_a_table_with_every_flag_once(tool: str) -> None:
    rows = tool_table(tool)
    named = [re.match(r"`([^`]+)`", row[0]) for row in rows if not row[0].startswith(NO_FLAG)]
    assert all(named), f"{tool}: every row must start with the flag in backquotes"
    flags = [m.group(1) for m in named if m]
    assert sorted(f for f in set(flags) if flags.count(f) > 1) == [], f"{tool}: flags listed twice"
    assert sorted(set(FLAGS[tool]) - set(flags)) == [], f"{tool}: flags missing from the table"
    assert sorted(set(flags) - set(FLAGS[tool])) == [], f"{tool}: rows for flags the tool does not have"
    unflagged = [row for row in rows if row[0].startswith(NO_FLAG)]
    assert rows[len(rows) - len(unflagged):] == unflagged, f"{tool}: the (no flag) rows go after the flags'"
    for row in unflagged:
        assert re.search(r"params\.[a-z_]+", row[1]), f"{tool}: {row[0]!r} maps to no params.NAME"


def test_kc_s_wasserstein_style_loss_maps_to_style_loss_w2() -> None:
    rows = [row for row in tool_table("KC") if row[0].startswith(NO_FLAG) and "style loss" in row[0]]
    assert len(rows) == 1 and '`params.style_loss: "w2"`' in rows[0][1], rows


def test_every_params_name_is_a_request_parameter() -> None:
    names = set(re.findall(r"params\.([a-z_][a-z0-9_]*)", text()))
    assert names, "docs/migrating.md names no params.NAME at all"
    assert sorted(names - set(PARAMS)) == [], "params.NAME that are not request parameters (nst_http.params.PARAMS)"


def test_every_params_choice_is_a_valid_value() -> None:
    for name, value in re.findall(r"params\.([a-z_]+): \"([^\"]*)\"", text()):
        choices = PARAMS[name].choices if name in PARAMS else None
        assert choices is not None and value in choices, f"params.{name}: {value!r} is not one of {choices}"
