"""DynamoDB prices as data (toolkit/cost/prices/<region>.json or the user's own file), loaded and validated."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION: Final = 1
PRICES_DIR: Final = Path(__file__).parent / "prices"

# What each price is counted in: a file whose unit differs is refused, so a price per hour cannot pass for one per
# million requests.
_UNITS: Final = {
    "on_demand_write_request_units": "write request unit",
    "on_demand_read_request_units": "read request unit",
    "provisioned_write_capacity_unit_hours": "write capacity unit-hour",
    "provisioned_read_capacity_unit_hours": "read capacity unit-hour",
    "storage_gb_months": "GB-month",
    "pitr_gb_months": "GB-month",
    "on_demand_backup_gb_months": "GB-month",
    "streams_read_request_units": "streams read request unit",
}


class PricesError(ValueError):
    """A prices file is missing, unreadable or invalid; the message names the file, the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """`usd` for every `per` units of `unit`, as `source` states it, read on `read_on`."""

    usd: float = Field(ge=0)
    per: int = Field(gt=0)
    unit: str
    source: str = Field(min_length=1)
    read_on: date
    # True only where an AWS-owned copy of the figure was found; the command warns about every other price it uses.
    confirmed: bool
    provenance: str = Field(min_length=1)

    @property
    def per_unit(self) -> float:
        return self.usd / self.per


def _check_units(group: BaseModel) -> None:
    for name, price in group:
        if isinstance(price, Price) and price.unit != _UNITS[name]:
            raise ValueError(f"{name}: unit must be {_UNITS[name]!r}, not {price.unit!r}")


class TableClassPrices(_Strict):
    on_demand_write_request_units: Price
    on_demand_read_request_units: Price
    provisioned_write_capacity_unit_hours: Price
    provisioned_read_capacity_unit_hours: Price
    storage_gb_months: Price

    @model_validator(mode="after")
    def _units(self) -> TableClassPrices:
        _check_units(self)
        return self


class FeaturePrices(_Strict):
    pitr_gb_months: Price
    on_demand_backup_gb_months: Price
    streams_read_request_units: Price

    @model_validator(mode="after")
    def _units(self) -> FeaturePrices:
        _check_units(self)
        return self


class TableClasses(_Strict):
    standard: TableClassPrices
    standard_ia: TableClassPrices

    def of(self, table_class: Literal["standard", "standard_ia"]) -> TableClassPrices:
        return self.standard if table_class == "standard" else self.standard_ia


class FreeTier(_Strict):
    included: Literal[False]  # the model has no free-tier arithmetic: a file may only say it is left out
    note: str


class Prices(_Strict):
    schema_version: Literal[1]
    region: str = Field(min_length=1)
    currency: Literal["USD"]
    free_tier: FreeTier
    table_classes: TableClasses
    features: FeaturePrices

    def unconfirmed(self) -> list[str]:
        """Dotted names of the prices no AWS-owned copy confirmed."""
        names = []
        for class_name, group in self.table_classes:
            names += [f"table_classes.{class_name}.{name}" for name, price in group if not price.confirmed]
        names += [f"features.{name}" for name, price in self.features if not price.confirmed]
        return names


def regions() -> list[str]:
    return sorted(path.stem for path in PRICES_DIR.glob("*.json"))


def load_prices(path: Path) -> Prices:
    """The prices in `path`, validated; PricesError names the field and the reason of each problem."""
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise PricesError(f"{path}: cannot be read ({error.strerror or type(error).__name__})") from None
    except json.JSONDecodeError as error:
        raise PricesError(f"{path}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise PricesError(
            f"{path}: schema_version {data['schema_version']!r} is not supported (this loanbook reads {SCHEMA_VERSION})"
        )
    try:
        return Prices.model_validate(data)
    except ValidationError as error:
        raise PricesError(f"{path}: {validation_problems(error)}") from None


def region_prices(region: str) -> Prices:
    path = PRICES_DIR / f"{region}.json"
    if not path.is_file():
        raise PricesError(f"no prices for region {region!r} (known: {', '.join(regions())}); pass --prices FILE")
    return load_prices(path)


def validation_problems(error: ValidationError) -> str:
    """`field.path: reason; ...` for each problem pydantic found."""
    problems = []
    for issue in error.errors():
        field = ".".join(str(part) for part in issue["loc"]) or "(top level)"
        problems.append(f"{field}: {issue['msg']}")
    return "; ".join(problems)
