"""deploy/aws/dynamodb-tables.yaml cannot drift from the code: keys, attributes, indexes, TTL, names, capacity."""

from __future__ import annotations

import re
from typing import Any

import pytest

from chassis.config import DynamoSettings
from chassis.dynamodb_tables import TableDesign
from services.logging.adapters.dynamodb import LOG_TABLE
from services.payment.adapters.dynamodb import PAYMENT_TABLE
from tests.support.aws_templates import (
    TABLE_RESOURCES,
    TABLES_TEMPLATE,
    Resolver,
    design_of,
    load,
    parameter_values,
    table_properties,
)
from tests.support.dynamodb_calls import queried_indexes

DESIGNS: dict[str, TableDesign] = {"payments": PAYMENT_TABLE, "logs": LOG_TABLE}
# Where each table's queries are written: the indexes they name must be the template's.
ADAPTERS = {"services.payment.adapters.dynamodb": "payments", "services.logging.adapters.dynamodb": "logs"}
BILLING_MODES = ("PAY_PER_REQUEST", "PROVISIONED")


@pytest.mark.parametrize("billing", BILLING_MODES)
@pytest.mark.parametrize("table", DESIGNS)
def test_each_table_has_the_code_s_keys_indexes_and_ttl(table: str, billing: str) -> None:
    properties = table_properties(table, BillingMode=billing)

    assert design_of(properties) == DESIGNS[table]
    # DynamoDB refuses definitions no key uses, and every key attribute needs one: exactly the design's.
    assert sorted(properties["AttributeDefinitions"], key=str) == sorted(
        DESIGNS[table].attribute_definitions(), key=str
    )
    assert [index["Projection"] for index in properties["GlobalSecondaryIndexes"]] == [
        {"ProjectionType": "ALL"} for _ in DESIGNS[table].indexes
    ]


def test_a_table_without_ttl_in_the_code_has_none_in_the_template() -> None:
    assert PAYMENT_TABLE.ttl_attribute is None
    assert "TimeToLiveSpecification" not in table_properties("payments")
    assert table_properties("logs")["TimeToLiveSpecification"] == {
        "AttributeName": LOG_TABLE.ttl_attribute,
        "Enabled": True,
    }


def test_every_index_the_code_queries_is_in_the_template_and_the_design() -> None:
    queried = queried_indexes()
    assert set(queried) == set(ADAPTERS), "a new module queries an index: say which table it reads"
    for module, indexes in queried.items():
        table = ADAPTERS[module]
        in_template = {index["IndexName"] for index in table_properties(table)["GlobalSecondaryIndexes"]}
        assert indexes <= in_template, f"{module} queries {indexes - in_template}, not in {TABLES_TEMPLATE.name}"
        assert indexes <= {index.name for index in DESIGNS[table].indexes}, "the start-up check would not see it"


@pytest.mark.parametrize("prefix", ["loanbook", "staging.loanbook_2"])
def test_table_names_are_the_services_names_for_the_prefix(prefix: str) -> None:
    settings = DynamoSettings(dynamodb_table_prefix=prefix)
    for table in DESIGNS:
        assert table_properties(table, TablePrefix=prefix)["TableName"] == settings.table_name(table)


def test_the_prefix_parameter_accepts_what_the_services_accept() -> None:
    parameter = load(TABLES_TEMPLATE)["Parameters"]["TablePrefix"]
    field = DynamoSettings.model_fields["dynamodb_table_prefix"]
    assert parameter["Default"] == field.default
    patterns = [getattr(rule, "pattern", None) for rule in field.metadata]
    assert parameter["AllowedPattern"] in patterns
    assert re.fullmatch(parameter["AllowedPattern"], "loanbook")


@pytest.mark.parametrize("table", DESIGNS)
def test_on_demand_by_default_provisioned_with_capacity_on_the_table_and_every_index(table: str) -> None:
    on_demand = table_properties(table)
    assert on_demand["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in on_demand
    assert all("ProvisionedThroughput" not in index for index in on_demand["GlobalSecondaryIndexes"])

    provisioned = table_properties(table, BillingMode="PROVISIONED")
    assert provisioned["BillingMode"] == "PROVISIONED"
    for holder in [provisioned, *provisioned["GlobalSecondaryIndexes"]]:
        assert set(holder["ProvisionedThroughput"]) == {"ReadCapacityUnits", "WriteCapacityUnits"}


def _scaling(template: dict[str, Any], billing: str) -> dict[str, dict[str, Any]]:
    """The auto-scaling resources made for `billing`, by logical id, with their properties resolved."""
    resolver = Resolver(template, parameter_values(template, BillingMode=billing))
    return {
        name: {"Type": resource["Type"], **resolver.value(resource["Properties"])}
        for name, resource in template["Resources"].items()
        if resource["Type"].startswith("AWS::ApplicationAutoScaling::")
        and ("Condition" not in resource or resolver.conditions[resource["Condition"]])
    }


def test_provisioned_tables_and_each_of_their_indexes_scale_on_reads_and_writes() -> None:
    template = load(TABLES_TEMPLATE)
    assert _scaling(template, "PAY_PER_REQUEST") == {}
    scaling = _scaling(template, "PROVISIONED")
    targets = {name: resource for name, resource in scaling.items() if resource["Type"].endswith("ScalableTarget")}
    wanted = {
        (f"table/${{{TABLE_RESOURCES[table]}}}{suffix}", f"dynamodb:{kind}:{dimension}CapacityUnits")
        for table, design in DESIGNS.items()
        for suffix, kind in [("", "table"), *((f"/index/{index.name}", "index") for index in design.indexes)]
        for dimension in ("Read", "Write")
    }
    assert {(target["ResourceId"], target["ScalableDimension"]) for target in targets.values()} == wanted
    assert all(target["ServiceNamespace"] == "dynamodb" for target in targets.values())
    assert all(int(target["MinCapacity"]) <= int(target["MaxCapacity"]) for target in targets.values())
    policies = [resource for resource in scaling.values() if resource["Type"].endswith("ScalingPolicy")]
    assert sorted(policy["ScalingTargetId"] for policy in policies) == sorted(targets)
    for policy in policies:
        target = targets[policy["ScalingTargetId"]]
        dimension = "Read" if "Read" in target["ScalableDimension"] else "Write"
        configuration = policy["TargetTrackingScalingPolicyConfiguration"]
        assert policy["PolicyType"] == "TargetTrackingScaling"
        assert configuration["PredefinedMetricSpecification"] == {
            "PredefinedMetricType": f"DynamoDB{dimension}CapacityUtilization"
        }


@pytest.mark.parametrize("table", DESIGNS)
def test_tables_are_kept_recoverable_and_protected(table: str) -> None:
    resource = load(TABLES_TEMPLATE)["Resources"][TABLE_RESOURCES[table]]
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")
    properties = table_properties(table)
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["DeletionProtectionEnabled"] is True
    assert table_properties(table, DeletionProtection="false")["DeletionProtectionEnabled"] is False


@pytest.mark.parametrize("table", DESIGNS)
def test_encryption_is_aws_owned_unless_a_customer_key_is_given(table: str) -> None:
    assert table_properties(table)["SSESpecification"] == {"SSEEnabled": False}
    key = "arn:aws:kms:eu-west-1:111122223333:key/0a1b2c3d-1111-2222-3333-444455556666"
    assert re.fullmatch(load(TABLES_TEMPLATE)["Parameters"]["KmsKeyArn"]["AllowedPattern"], key)
    assert table_properties(table, KmsKeyArn=key)["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": key,
    }


@pytest.mark.parametrize("table", DESIGNS)
def test_tags_come_from_the_parameters(table: str) -> None:
    tags = {tag["Key"]: tag["Value"] for tag in table_properties(table, EnvironmentTag="staging")["Tags"]}
    assert tags["environment"] == "staging"
    assert tags["application"] == "loanbook"
    assert "cost-center" not in tags
    tagged = table_properties(table, CostCenterTag="lending-42")["Tags"]
    assert {"Key": "cost-center", "Value": "lending-42"} in tagged


def test_names_and_arns_are_exported() -> None:
    outputs = load(TABLES_TEMPLATE)["Outputs"]
    for resource, prefix in [("PaymentsTable", "Payments"), ("LogsTable", "Logs")]:
        assert outputs[f"{prefix}TableName"]["Value"] == {"Ref": resource}
        assert outputs[f"{prefix}TableArn"]["Value"] == {"Fn::GetAtt": [resource, "Arn"]}
        for kind in ("Name", "Arn"):
            export = outputs[f"{prefix}Table{kind}"]["Export"]["Name"]
            assert export == {"Fn::Sub": f"${{AWS::StackName}}-{prefix}Table{kind}"}
