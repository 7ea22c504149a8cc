"""The one strict params model: every key typed, every range checked on both sides, every
problem of a file reported together and named by its full key."""

import copy
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import yaml

from quantlake.params import SECTIONS, DataParams, Params, ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
UTC = dt.timezone.utc


def with_keys(**keys) -> dict:
    """The repository's params.yaml with `section__key=value` (or `data__sim__seed=...`) set."""
    raw = copy.deepcopy(RAW)
    for path, value in keys.items():
        *parents, leaf = path.split("__")
        node = raw
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return raw


def problems_of(raw) -> list[str]:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    return info.value.problems


def test_the_repository_params_parse_and_document_every_key_with_its_default():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params) and params.as_of == dt.date.fromisoformat(RAW["data"]["as_of"])
    defaults = parse_params({"data": {"as_of": RAW["data"]["as_of"]}})
    for name in SECTIONS:
        # params.yaml is the full documented set: every key of every section, nested ones too
        assert params.plain(name) == defaults.plain(name), f"{name}: params.yaml differs from the dataclass defaults"
        assert set(RAW[name]) == set(params.plain(name)), f"{name}: params.yaml does not list every key"
    for nested in ("sim", "binance", "archive", "files"):
        assert set(RAW["data"][nested]) == set(params.plain("data")[nested])


def test_a_typo_is_named_with_the_closest_key():
    with pytest.raises(ParamsError) as info:
        parse_params(with_keys(data__toxic_treshold=50))
    assert str(info.value) == "params.yaml: data.toxic_treshold: unknown key (did you mean toxic_threshold?)"
    assert problems_of(with_keys(data__binance__max_worker=3)) == ["data.binance.max_worker: unknown key (did you mean max_workers?)"]
    assert problems_of({**RAW, "optimisation": {}}) == ["optimisation: unknown section (did you mean optimization?)"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("data__workers", "four", "data.workers: expected an integer, got 'four'"),
        ("data__max_gap_days", "x", "data.max_gap_days: expected an integer, got 'x'"),
        ("data__workers", 2.5, "data.workers: expected an integer, got 2.5"),
        ("data__workers", True, "data.workers: expected an integer, got True"),
        ("data__toxic_threshold", "5", "data.toxic_threshold: expected a number, got '5'"),
        ("data__as_of", "yesterday", "data.as_of: 'yesterday' is not an ISO date (YYYY-MM-DD)"),
        ("data__source", 3, "data.source: expected a string, got 3"),
        ("audit__certify", "ok", "audit.certify: expected a list, got 'ok'"),
        ("data__sim", [1], "data.sim: expected a mapping of parameters, got list [1]"),
        ("optimization__method", "magic", "optimization.method: unknown method 'magic'"),
    ],
)
def test_wrong_types_are_one_clear_line(key, value, message):
    found = problems_of(with_keys(**{key: value}))
    assert len(found) == 1 and found[0].startswith(message), found


# (key, rejected, accepted): the two sides of every range boundary
BOUNDARIES = [
    ("data__max_gap_days", -1, 0),
    ("data__workers", 0, 1),
    ("data__freshness_hours", -0.5, 0),
    ("data__toxic_threshold", 0, 0.01),
    ("data__wick_low_factor", 1.0, 1.01),
    ("data__wick_high_factor", 1.0, 1.01),
    ("data__stall_days", 1, 2),
    ("data__max_contamination_days", 0, 1),
    ("data__sim__extra_symbols", -1, 0),
    ("data__sim__extra_symbols", 20_001, 20_000),
    ("data__binance__max_workers", 0, 1),
    ("data__binance__retries", -1, 0),
    ("data__binance__timeout_s", 0, 0.1),
    ("data__archive__retries", -1, 0),
    ("data__archive__timeout_s", 0, 0.1),
    ("repair__max_fills", 0, 1),
    ("repair__symbol_budget_s", 0, 0.1),
    ("repair__retry_after_days", -1, 0),
    ("repair__outage_min_symbols", 1, 2),
    ("audit__stale_days", -1, 0),
    ("audit__stale_days", -5, 3),
    ("audit__min_quality", 2, 1),
    ("audit__min_quality", 1.000001, 1.0),
    ("audit__min_quality", -0.01, 0),
    ("audit__certify", ["ok", "toxic"], ["ok"]),
    ("audit__certify", [], ["stale"]),
    ("audit__certify", ["ok", "ok"], ["ok", "degraded"]),
    ("selection__top_n", 0, 1),
    ("optimization__max_weight", 0, 1),
    ("optimization__max_weight", 1.01, 1),
    ("synthesis__trend_lookback", 1, 2),
    ("backtest__fee_bps", -1, 0),
]


@pytest.mark.parametrize("key, bad, good", BOUNDARIES)
def test_every_range_on_both_sides_of_its_boundary(key, bad, good):
    found = problems_of(with_keys(**{key: bad}))
    name = key.replace("__", ".")
    assert len(found) == 1 and found[0].startswith(name), found
    params = parse_params(with_keys(**{key: good}))
    *sections, leaf = key.split("__")
    node = params
    for s in sections:
        node = getattr(node, s)
    assert getattr(node, leaf) == (tuple(good) if isinstance(good, list) else good)


def test_every_problem_of_the_file_is_listed_in_one_error():
    raw = with_keys(data__toxic_treshold=50, data__workers="four", data__max_gap_days=-1,
                    audit__stale_days=-5, audit__min_quality=2, audit__certify="ok",
                    selection__topn=3, backtest__selection={"top_n": 1})
    with pytest.raises(ParamsError) as info:
        parse_params(raw, source="params.yaml")
    message = str(info.value)
    assert message.startswith("params.yaml: 8 problems")
    for line in (
        "params.yaml: data.toxic_treshold: unknown key (did you mean toxic_threshold?)",
        "params.yaml: data.workers: expected an integer, got 'four'",
        "params.yaml: data.max_gap_days must be >= 0, got -1",
        "params.yaml: audit.stale_days must be >= 0, got -5",
        "params.yaml: audit.min_quality must be in [0, 1], got 2.0",
        "params.yaml: audit.certify: expected a list, got 'ok'",
        "params.yaml: selection.topn: unknown key (did you mean top_n?)",
        "params.yaml: backtest.selection: unknown key",  # the recipe's selection is the `selection` section
    ):
        assert line in message, (line, message)


def test_the_recipe_is_the_alpha_sections():
    params = parse_params(with_keys(selection__top_n=3, optimization__method="min_variance"))
    assert params.backtest.selection is params.selection and params.selection.top_n == 3
    assert params.backtest.optimize is params.optimization and params.backtest.optimize.method == "min_variance"
    assert params.backtest.synthesis is params.synthesis
    assert "selection" not in params.plain("backtest") and params.plain("backtest")["fee_bps"] == 10.0


def test_a_missing_key_and_its_default_are_the_same_params():
    raw = copy.deepcopy(RAW)
    del raw["optimization"]["max_weight"], raw["data"]["sim"]
    assert parse_params(raw) == parse_params(RAW)


def test_as_of_is_required_closed_and_not_before_start():
    assert problems_of({"data": {}}) == ["data.as_of: required (the last closed UTC day the lakehouse must cover)"]
    assert problems_of(with_keys(data__start="2026-11-21", data__as_of="2026-11-20")) == ["data.start 2026-11-21 is after data.as_of 2026-11-20"]
    assert parse_params(with_keys(data__start="2026-11-20", data__as_of="2026-11-20")).data.start == dt.date(2026, 11, 20)
    raw = with_keys(data__as_of="2026-11-20")
    # the day closes at midnight UTC: one second before it is refused, at midnight it is accepted
    with pytest.raises(ParamsError, match=r"data.as_of=2026-11-20 has not closed yet in UTC"):
        parse_params(raw, now=dt.datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC))
    assert parse_params(raw, now=dt.datetime(2026, 11, 21, 0, 0, tzinfo=UTC)).as_of == dt.date(2026, 11, 20)
    assert parse_params(raw).as_of == dt.date(2026, 11, 20)  # no clock, no clock check


def test_an_unreadable_file_names_the_file(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml: cannot read params"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match=f"{bad}: cannot read params"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match=f"{bad}: expected a mapping of sections"):
        load_params(bad)


def test_sections_are_frozen_and_their_constructors_check_too():
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.data.workers = 8  # type: ignore[misc]
    with pytest.raises(ParamsError, match="data.workers must be >= 1"):
        DataParams(as_of=dt.date(2026, 1, 1), workers=0)


def test_data_processes_is_zero_for_one_per_core_or_a_count_and_never_negative():
    assert parse_params(with_keys(data__processes=0)).data.processes == 0
    assert parse_params(with_keys(data__processes=3)).data.processes == 3
    with pytest.raises(ParamsError, match=r"data.processes must be >= 0 \(0 = one per core\), got -1"):
        parse_params(with_keys(data__processes=-1))
    with pytest.raises(ParamsError, match="data.procesess: unknown key"):
        parse_params(with_keys(data__procesess=2))
