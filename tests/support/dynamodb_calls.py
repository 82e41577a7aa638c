"""Which DynamoDB operations a process's code can call, found statically: what its IAM policy must allow."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Final

import botocore.session
from botocore import xform_name

# A process is its entry module and every module of ours it imports (imports under TYPE_CHECKING excluded). Each
# module is cut into units: its module-level code, each top-level function, each top-level class (all its methods).
# Reaching starts at the module-level code of every imported module and at every decorated top-level function (its
# decorator runs at import and may register it: a CLI command); a reached unit reaches each unit it names, the names
# resolved through its module's imports (`query_page`, `wire.query_page`, re-exports). Over-approximate on purpose (a
# class brings all its methods), so a call is never missed; precise enough that a helper the process never names
# (chassis.dynamodb_wire.scan_page in a service) does not widen its policy.
#
# A DynamoDB call is an attribute named like one of botocore's DynamoDB operations in snake case
# (`client.get_item(...)`, `functools.partial(client.batch_write_item, ...)`), `get_paginator("<operation>")` or
# `_make_api_call("<Operation>", ...)`, on a receiver that names a client (`client`, `self._client`, `dynamodb`,
# `self.dynamodb`). Receivers known not to be clients are listed; any other receiver is reported, so a call through
# an unexpected name cannot slip by unclassified.

ROOT: Final = Path(__file__).resolve().parents[2]
OUR_PACKAGES: Final = ("chassis", "services", "migration", "toolkit", "gateway")

CLIENT_RECEIVER: Final = re.compile(r"(^|\.)_?(client|dynamodb)$")
# Objects of ours with a method spelled like a DynamoDB operation: the logging store and use cases call their
# repositories' `query`, which is not DynamoDB's Query (the DynamoDB repository's own calls are found in it).
NOT_CLIENTS: Final = frozenset({"self._postgres", "self._dynamo", "self._store"})

# TransactWriteItems is authorised per item: IAM has no action of its own for it.
TRANSACTION_ITEM_ACTIONS: Final = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@cache
def operations() -> dict[str, str]:
    """botocore's DynamoDB operations: snake-case method name -> operation name."""
    model = botocore.session.get_session().get_service_model("dynamodb")
    return {xform_name(name): name for name in model.operation_names}


@dataclass(frozen=True)
class Call:
    operation: str
    where: str  # "<module>:<line>"
    receiver: str


UnitKey = tuple[str, str]  # (module, unit name)


@dataclass
class Unit:
    module: str
    name: str  # a top-level function or class; "<module>" for the module-level code
    references: set[str] = field(default_factory=set)  # names and dotted names (`wire.query_page`) it uses
    calls: list[Call] = field(default_factory=list)
    other_receivers: list[Call] = field(default_factory=list)
    transaction_items: set[str] = field(default_factory=set)


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _ours(module: str) -> bool:
    return module.split(".")[0] in OUR_PACKAGES and module_path(module) is not None


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def _runtime_nodes(statements: Iterable[ast.stmt]) -> Iterator[ast.AST]:
    """Every node under `statements`, leaving out `if TYPE_CHECKING:` bodies (types only)."""
    for statement in statements:
        if _is_type_checking(statement):
            assert isinstance(statement, ast.If)
            yield from _runtime_nodes(statement.orelse)
            continue
        yield from ast.walk(statement)


@cache
def _parsed(module: str) -> ast.Module:
    path = module_path(module)
    assert path is not None, module
    return ast.parse(path.read_text(), str(path))


@dataclass(frozen=True)
class _ModuleRef:
    module: str


@dataclass(frozen=True)
class _ImportedName:
    module: str
    name: str


Binding = UnitKey | _ModuleRef | _ImportedName


@cache
def bindings(module: str) -> dict[str, Binding]:
    """What each name bound in `module` (by a top-level definition or an import of ours, anywhere) stands for."""
    bound: dict[str, Binding] = {}
    tree = _parsed(module)
    for node in _runtime_nodes(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    if alias.asname:
                        bound[alias.asname] = _ModuleRef(alias.name)
                    else:
                        top = alias.name.split(".")[0]
                        bound[top] = _ModuleRef(top)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _ours(node.module):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                target = _ModuleRef(submodule) if _ours(submodule) else _ImportedName(node.module, alias.name)
                bound[alias.asname or alias.name] = target
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound[statement.name] = (module, statement.name)
    return bound


def resolve(module: str, dotted: str) -> UnitKey | None:
    """The unit a (dotted) name used in `module` stands for, if one of ours: through imports and re-exports."""
    first, *rest = dotted.split(".")
    binding = bindings(module).get(first)
    while isinstance(binding, _ImportedName):
        binding = bindings(binding.module).get(binding.name)
    if binding is None or isinstance(binding, tuple):
        return binding  # a class's attribute (`Class.method`) is in the class's unit
    current = binding.module
    for part in rest:
        if _ours(f"{current}.{part}"):
            current = f"{current}.{part}"
            continue
        return resolve(current, part)
    return None


def modules_of(package: str) -> list[str]:
    """Every module of one of our packages."""
    return [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in sorted((ROOT / package).rglob("*.py"))
    ]


def import_closure(entry: str) -> set[str]:
    seen: set[str] = set()
    pending = [entry]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        for node in _runtime_nodes(_parsed(module).body):
            named: list[str] = []
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                named = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in named:
                parts = name.split(".")
                pending.extend(prefix for end in range(1, len(parts) + 1) if _ours(prefix := ".".join(parts[:end])))
    return seen


def _string_argument(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


def _unit(module: str, name: str, statements: list[ast.stmt]) -> Unit:
    unit = Unit(module, name)
    known = operations()
    by_operation_name = {operation: operation for operation in known.values()}
    nodes = list(_runtime_nodes(statements))
    call_of = {id(node.func): node for node in nodes if isinstance(node, ast.Call)}
    for node in nodes:
        if isinstance(node, ast.Name | ast.Attribute) and (dotted := _dotted(node)) is not None:
            unit.references.add(dotted)
        if isinstance(node, ast.Dict):
            unit.transaction_items.update(
                key.value
                for key in node.keys
                if isinstance(key, ast.Constant) and key.value in TRANSACTION_ITEM_ACTIONS
            )
        if not isinstance(node, ast.Attribute):
            continue
        operation = known.get(node.attr)
        if operation is None and (parent := call_of.get(id(node))) is not None:
            argument = _string_argument(parent)
            if node.attr == "get_paginator" and argument is not None:
                operation = known.get(argument)
            elif node.attr == "_make_api_call" and argument is not None:
                operation = by_operation_name.get(argument)
        if operation is None:
            continue
        receiver = ast.unparse(node.value)
        call = Call(operation, f"{module}:{node.lineno}", receiver)
        if CLIENT_RECEIVER.search(receiver):
            unit.calls.append(call)
        elif receiver not in NOT_CLIENTS:
            unit.other_receivers.append(call)
    return unit


@cache
def units_of(module: str) -> tuple[Unit, ...]:
    units: list[Unit] = []
    module_level: list[ast.stmt] = []
    for statement in _parsed(module).body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            units.append(_unit(module, statement.name, [statement]))
        else:
            module_level.append(statement)
    units.append(_unit(module, "<module>", module_level))
    return tuple(units)


@dataclass(frozen=True)
class ProcessCalls:
    """What a process's reachable code calls on DynamoDB."""

    calls: tuple[Call, ...]
    transaction_items: frozenset[str]
    unclassified: tuple[Call, ...]  # operation-like attributes on receivers neither a client nor listed as not one

    @property
    def operations(self) -> set[str]:
        return {call.operation for call in self.calls}

    def iam_actions(self) -> set[str]:
        """The IAM actions those operations need (TransactWriteItems: one per kind of item it writes)."""
        actions: set[str] = set()
        for operation in self.operations:
            if operation == "TransactWriteItems":
                assert self.transaction_items, "TransactWriteItems called, but no Put/Update/Delete item found"
                actions.update(f"dynamodb:{TRANSACTION_ITEM_ACTIONS[kind]}" for kind in self.transaction_items)
            else:
                assert operation not in {"TransactGetItems", "ExecuteStatement", "BatchExecuteStatement"}, (
                    f"{operation}: map it to its IAM actions here first"
                )
                actions.add(f"dynamodb:{operation}")
        return actions


def _decorated_functions(module: str) -> set[UnitKey]:
    """Top-level functions with a decorator: it runs at import and may register them (a CLI command, a route)."""
    return {
        (module, statement.name)
        for statement in _parsed(module).body
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.decorator_list
    }


def process_calls(entry: str, excluded: Iterable[UnitKey] = ()) -> ProcessCalls:
    """The DynamoDB calls reachable from module `entry`; `excluded` (module, unit) pairs are never entered."""
    skip = set(excluded)
    units = {(unit.module, unit.name): unit for module in import_closure(entry) for unit in units_of(module)}
    missing = skip - set(units)
    assert not missing, f"excluded units not found in {entry}'s code: {missing}"
    reached: list[Unit] = []
    seen: set[UnitKey] = set()
    pending = [key for key in units if key[1] == "<module>" or key in _decorated_functions(key[0])]
    while pending:
        key = pending.pop()
        if key in seen or key in skip or key not in units:
            continue
        seen.add(key)
        unit = units[key]
        reached.append(unit)
        pending.extend(target for dotted in unit.references if (target := resolve(unit.module, dotted)) is not None)
    transacting = [unit for unit in reached if any(c.operation == "TransactWriteItems" for c in unit.calls)]
    return ProcessCalls(
        calls=tuple(call for unit in reached for call in unit.calls),
        # The items of a transaction are built in the unit that sends it (create, put_if_newer next to _transact).
        transaction_items=frozenset(kind for unit in transacting for kind in unit.transaction_items),
        unclassified=tuple(call for unit in reached for call in unit.other_receivers),
    )


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level names bound to a string (`BY_TRACE: Final = "by_trace"`)."""
    constants: dict[str, str] = {}
    for statement in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(statement, ast.AnnAssign):
            target, value = statement.target, statement.value
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            constants[target.id] = value.value
    return constants


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _index_values(
    tree: ast.Module, expression: ast.expr, function: ast.FunctionDef | ast.AsyncFunctionDef | None, where: str
) -> set[str]:
    """The strings `expression` can be: a literal, a module constant, or a parameter of `function` followed to the
    arguments of every call of that function in the module (the payment adapter's `_list(BY_CUSTOMER, ...)`)."""
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return {expression.value}
    if not isinstance(expression, ast.Name):
        raise AssertionError(f"{where}: IndexName {ast.unparse(expression)} cannot be followed statically")
    constants = _string_constants(tree)
    if expression.id in constants:
        return {constants[expression.id]}
    parameters = [argument.arg for argument in function.args.args] if function else []
    if expression.id not in parameters or function is None:
        raise AssertionError(f"{where}: IndexName {expression.id} is neither a constant nor a parameter")
    position = parameters.index(expression.id) - (1 if parameters[:1] == ["self"] else 0)
    values: set[str] = set()
    for caller in _functions(tree):
        for node in ast.walk(caller):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == function.name):
                continue
            given = [keyword.value for keyword in node.keywords if keyword.arg == expression.id]
            argument = given[0] if given else node.args[position]
            values |= _index_values(tree, argument, caller, f"{where} <- {function.name}")
    assert values, f"{where}: no call of {function.name} gives its {expression.id}"
    return values


def queried_indexes(packages: Iterable[str] = OUR_PACKAGES) -> dict[str, set[str]]:
    """module -> the index names its requests carry: IndexName next to TableName in a dict or in a call's keywords
    (an index's definition, in CreateTable, has no TableName of its own)."""
    found: dict[str, set[str]] = defaultdict(set)
    for package in packages:
        for module in modules_of(package):
            tree = _parsed(module)
            # Each node's innermost enclosing function: ast.walk meets outer functions first.
            enclosing: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] = {}
            for function in _functions(tree):
                enclosing.update((id(node), function) for node in ast.walk(function))
            for node in ast.walk(tree):
                values: list[ast.expr] = []
                if isinstance(node, ast.Dict):
                    fields = {
                        key.value: value
                        for key, value in zip(node.keys, node.values, strict=True)
                        if isinstance(key, ast.Constant)
                    }
                    values = [fields["IndexName"]] if {"IndexName", "TableName"} <= set(fields) else []
                elif isinstance(node, ast.Call):
                    keywords = {keyword.arg: keyword.value for keyword in node.keywords}
                    values = [keywords["IndexName"]] if {"IndexName", "TableName"} <= set(keywords) else []
                for value in values:
                    where = f"{module}:{value.lineno}"
                    found[module] |= _index_values(tree, value, enclosing.get(id(node)), where)
    return dict(found)
