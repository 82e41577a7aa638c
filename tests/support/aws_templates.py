"""The CloudFormation templates in deploy/aws, loaded and resolved for given parameters, as the tests compare them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

from chassis.dynamodb_tables import Index, TableDesign

AWS_DIR: Final = Path(__file__).resolve().parents[2] / "deploy" / "aws"
TABLES_TEMPLATE: Final = AWS_DIR / "dynamodb-tables.yaml"
POLICIES_TEMPLATE: Final = AWS_DIR / "iam-policies.yaml"
TABLE_RESOURCES: Final = {"payments": "PaymentsTable", "logs": "LogsTable"}

NO_VALUE: Final = object()  # AWS::NoValue: the property or list entry is left out


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, !If, ...) read as their long forms."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _short_form)


@cache
def load(path: Path) -> dict[str, Any]:
    """The template as plain data (cached: callers only read it)."""
    loaded = yaml.load(path.read_text(), Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader with CFN's tags
    assert isinstance(loaded, dict)
    return loaded


def parameter_values(template: Mapping[str, Any], **overrides: str) -> dict[str, str]:
    """Each parameter's default, replaced by `overrides`."""
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    unknown = set(overrides) - set(values)
    assert not unknown, f"no such parameters: {unknown}"
    return {**values, **overrides}


class Resolver:
    """Evaluates the intrinsic functions of a template's resource properties for given parameter values; a reference
    to another resource stays its logical id (`!Ref Table` -> "Table", `!Sub table/${Table}` -> "table/${Table}")."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self.template = template
        self.parameters = parameters
        self.conditions: dict[str, bool] = {}
        for name, expression in template.get("Conditions", {}).items():
            self.conditions[name] = self.condition(expression)

    def condition(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            (function, argument), *_ = expression.items()
            if function == "Condition":
                return self.conditions[argument]
            if function == "Fn::Equals":
                left, right = (self.value(part) for part in argument)
                return bool(left == right)
            if function == "Fn::Not":
                return not self.condition(argument[0])
            if function == "Fn::And":
                return all(self.condition(part) for part in argument)
            if function == "Fn::Or":
                return any(self.condition(part) for part in argument)
        raise AssertionError(f"unsupported condition {expression!r}")

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in (self.value(element) for element in node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (function, argument), *_ = node.items()
            if function == "Ref":
                if argument == "AWS::NoValue":
                    return NO_VALUE
                if argument in self.template["Resources"]:
                    return argument  # a resource: spelled as its logical id
                return self.parameters[argument]
            if function == "Fn::If":
                name, when_true, when_false = argument
                return self.value(when_true if self.conditions[name] else when_false)
            if function == "Fn::Sub" and isinstance(argument, str):
                text = argument
                for name, value in self.parameters.items():
                    text = text.replace(f"${{{name}}}", value)
                # What is left names a resource (kept as "${LogicalId}"), or is a mistake.
                left = set(re.findall(r"\$\{([^}]*)\}", text)) - set(self.template["Resources"])
                assert not left, f"unresolved substitution of {left} in {argument!r}"
                return text
            assert not function.startswith("Fn::"), f"unsupported intrinsic {function} in a table's properties"
        resolved = {key: self.value(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}


def table_properties(table: str, **parameters: str) -> dict[str, Any]:
    """The resolved Properties of the template's table `table` ("payments" or "logs") for these parameters."""
    template = load(TABLES_TEMPLATE)
    resource = template["Resources"][TABLE_RESOURCES[table]]
    assert resource["Type"] == "AWS::DynamoDB::Table"
    resolved: dict[str, Any] = Resolver(template, parameter_values(template, **parameters)).value(
        resource["Properties"]
    )
    return resolved


def key_of(schema: list[dict[str, str]]) -> tuple[str, str | None]:
    keys = {element["KeyType"]: element["AttributeName"] for element in schema}
    assert set(keys) <= {"HASH", "RANGE"}, f"malformed key schema {schema}"
    assert len(keys) == len(schema), f"a key type twice in {schema}"
    return keys["HASH"], keys.get("RANGE")


def design_of(properties: Mapping[str, Any]) -> TableDesign:
    """The TableDesign a template table implements (keys, indexes, TTL), to compare with the code's."""
    ttl = properties.get("TimeToLiveSpecification", {})
    return TableDesign(
        *key_of(properties["KeySchema"]),
        indexes=tuple(
            Index(index["IndexName"], *key_of(index["KeySchema"]))
            for index in properties.get("GlobalSecondaryIndexes", [])
        ),
        ttl_attribute=ttl["AttributeName"] if ttl.get("Enabled") in {True, "true"} else None,
    )


def create_table_request(properties: Mapping[str, Any], table_name: str) -> dict[str, Any]:
    """CreateTable's request for a template table's properties (what CloudFormation would send), under another name.

    Settings DynamoDB Local ignores or lacks (point-in-time recovery, SSE, tags, deletion protection) stay out: the
    unit tests check them on the template itself."""
    request: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = _throughput(properties["ProvisionedThroughput"])
    if "GlobalSecondaryIndexes" in properties:
        request["GlobalSecondaryIndexes"] = [
            {
                **{key: index[key] for key in ("IndexName", "KeySchema", "Projection")},
                **(
                    {"ProvisionedThroughput": _throughput(index["ProvisionedThroughput"])}
                    if "ProvisionedThroughput" in index
                    else {}
                ),
            }
            for index in properties["GlobalSecondaryIndexes"]
        ]
    return request


def _throughput(throughput: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(throughput[key]) for key in ("ReadCapacityUnits", "WriteCapacityUnits")}
