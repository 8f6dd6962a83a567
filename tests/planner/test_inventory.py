"""Inventory parsing: good and bad specs, ambiguous aliases, closest-match errors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploykit.errors import DeployKitError
from deploykit.planner.gpus import gpu_profiles
from deploykit.planner.inventory import parse_inventory


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("4xA100", [("a100_sxm4_80gb", 4)]),
        ("2xH100-80GB,1xL40S", [("h100_sxm", 2), ("l40s", 1)]),
        ("orin-agx-64", [("jetson_agx_orin_64gb", 1)]),
        ("8xH200", [("h200_sxm", 8)]),
        ("8*h200", [("h200_sxm", 8)]),
        (" 2 X a100-40gb , 1x T4 ", [("a100_sxm4_40gb", 2), ("t4", 1)]),
        ("2xl40s,3xL40S", [("l40s", 5)]),
        ("NVIDIA H100 80GB HBM3", [("h100_sxm", 1)]),
        ("mi300x", [("mi300x", 1)]),
    ],
)
def test_good_specs(spec, expected):
    assert [(i.gpu.id, i.count) for i in parse_inventory(spec)] == expected


def test_ambiguous_alias_names_the_default_and_alternatives():
    (item,) = parse_inventory("4xA100")
    assert item.gpu.memory_gb == 80 and "default" in item.default_note and "a100-40gb" in item.default_note
    (exact,) = parse_inventory("4xA100-80GB")
    assert exact.default_note is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ("4xFOO", r"unknown GPU 'FOO' \(closest: "),
        ("4xA1000", r"unknown GPU 'A1000' \(closest: .*a100"),
        ("0xH100", "count must be at least 1"),
        ("-2xH100", "count must be at least 1"),
        ("", "--gpus is empty"),
        ("2xH100,,1xL4", "empty item"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(DeployKitError, match=message):
        parse_inventory(spec)


ALIASES = [a for g in gpu_profiles() for a in [g.id, *g.aliases]]


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(1, 64), st.sampled_from(ALIASES), st.sampled_from(["x", "X", "*"]), st.booleans()),
                   min_size=1, max_size=4),
)
def test_any_spelling_of_known_gpus_parses_and_counts_add_up(items):
    parts, total = [], 0
    for n, alias, sep, upper in items:
        name = alias.upper() if upper else alias
        parts.append(f"{n}{sep}{name}" if n > 1 or upper else name)  # a bare name counts as one
        total += n if n > 1 or upper else 1
    parsed = parse_inventory(",".join(parts))
    assert sum(i.count for i in parsed) == total
    assert len({i.gpu.id for i in parsed}) == len(parsed)


@settings(max_examples=60, deadline=None)
@given(name=st.text(alphabet="qwzjk", min_size=3, max_size=8))
def test_garbage_names_fail_with_closest_matches(name):
    with pytest.raises(DeployKitError, match="closest: "):
        parse_inventory(f"2x{name}")
