"""Prices files: the shipped regions load, and a bad file is refused naming the field and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cost import round_prices_document
from toolkit.cost.prices import PricesError, load_prices, region_prices, regions


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_a_shipped_region_loads_with_a_source_and_date_for_every_price(region: str) -> None:
    prices = region_prices(region)
    assert prices.region == region
    for group in (prices.table_classes.standard, prices.table_classes.standard_ia, prices.features):
        for name, price in group:
            assert price.source.startswith("https://aws.amazon.com/dynamodb/pricing/"), name
            assert price.provenance, name
            assert price.read_on.year >= 2026, name


def test_the_shipped_regions_are_at_least_two() -> None:
    assert {"us-east-1", "eu-west-1"} <= set(regions())


def test_unconfirmed_prices_are_named() -> None:
    prices = region_prices("us-east-1")
    assert "features.pitr_gb_months" in prices.unconfirmed()
    assert "table_classes.standard.on_demand_write_request_units" not in prices.unconfirmed()


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(document))
    return path


def test_a_valid_file_of_ones_own_loads(tmp_path: Path) -> None:
    prices = load_prices(write(tmp_path, round_prices_document()))
    assert prices.table_classes.standard.on_demand_write_request_units.per_unit == pytest.approx(1e-6)


def test_a_missing_price_is_named(tmp_path: Path) -> None:
    document = round_prices_document()
    del document["features"]["pitr_gb_months"]
    with pytest.raises(PricesError, match=r"features\.pitr_gb_months: Field required"):
        load_prices(write(tmp_path, document))


def test_a_negative_price_is_named(tmp_path: Path) -> None:
    document = round_prices_document()
    document["table_classes"]["standard"]["storage_gb_months"]["usd"] = -1
    with pytest.raises(PricesError, match=r"table_classes\.standard\.storage_gb_months\.usd: .*greater than or equal"):
        load_prices(write(tmp_path, document))


def test_a_price_in_the_wrong_unit_is_refused(tmp_path: Path) -> None:
    document = round_prices_document()
    document["table_classes"]["standard"]["on_demand_write_request_units"]["unit"] = "write capacity unit-hour"
    with pytest.raises(PricesError, match="on_demand_write_request_units: unit must be 'write request unit'"):
        load_prices(write(tmp_path, document))


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    document = round_prices_document() | {"schema_version": 2}
    with pytest.raises(PricesError, match="schema_version 2 is not supported"):
        load_prices(write(tmp_path, document))


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    document = round_prices_document() | {"discount": 0.5}
    with pytest.raises(PricesError, match="discount: Extra inputs are not permitted"):
        load_prices(write(tmp_path, document))


def test_a_file_claiming_free_tier_arithmetic_is_refused(tmp_path: Path) -> None:
    document = round_prices_document() | {"free_tier": {"included": True, "note": "x"}}
    with pytest.raises(PricesError, match=r"free_tier\.included"):
        load_prices(write(tmp_path, document))


def test_not_json_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text("{\n  oops")
    with pytest.raises(PricesError, match=r"not JSON \(line 2"):
        load_prices(path)


def test_an_unknown_region_names_the_known_ones() -> None:
    with pytest.raises(PricesError, match=r"no prices for region 'mars-1' \(known: eu-west-1, us-east-1"):
        region_prices("mars-1")
