"""Only `invoice_bridge.ledger.StateTable` calls the DynamoDB client's item methods on the state table.

Every condition, consistent read and paging rule of the table then lives in one class: a module that called
`put_item` or `query` itself would have to repeat them, and would drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = [ROOT / "layers" / "common" / "invoice_bridge", ROOT / "ops", ROOT / "functions"]
WRAPPER = (ROOT / "layers" / "common" / "invoice_bridge" / "ledger.py", "StateTable")

# The DynamoDB client's item methods. `query` is also StateTable's own method, told apart by its arguments:
# the client's always names its table (`TableName=`, directly or in a `**kwargs`), the wrapper's never does.
ITEM_METHODS = {
    "get_item",
    "put_item",
    "delete_item",
    "update_item",
    "scan",
    "batch_get_item",
    "batch_write_item",
    "transact_get_items",
    "transact_write_items",
    "execute_statement",
    "batch_execute_statement",
    "execute_transaction",
}


def _is_client_item_call(call: ast.Call) -> bool:
    if not isinstance(call.func, ast.Attribute):
        return False
    if call.func.attr in ITEM_METHODS:
        return True
    if call.func.attr == "query":
        return any(k.arg is None or k.arg == "TableName" for k in call.keywords)
    return False


def direct_calls(source: str, allowed_class: str | None = None) -> list[int]:
    """Lines of `source` that call a DynamoDB item method, outside the class `allowed_class`."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == allowed_class:
            allowed.update(id(n) for n in ast.walk(node))
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and id(node) not in allowed and _is_client_item_call(node)
    )


def test_no_module_but_the_wrapper_calls_the_table_directly() -> None:
    found: dict[str, list[int]] = {}
    for folder in CHECKED:
        for path in sorted(folder.rglob("*.py")):
            allowed = WRAPPER[1] if path == WRAPPER[0] else None
            lines = direct_calls(path.read_text(encoding="utf-8"), allowed)
            if lines:
                found[str(path.relative_to(ROOT))] = lines
    assert found == {}


def test_the_wrapper_is_where_the_calls_are() -> None:
    # Guards the guard: if StateTable moved, the test above would pass on nothing.
    assert direct_calls(WRAPPER[0].read_text(encoding="utf-8")) != []


@pytest.mark.parametrize(
    "source",
    [
        "client.put_item(TableName=t, Item=i)",
        "self._table.client.delete_item(TableName=t, Key=k)",
        "dynamodb.query(TableName=t, KeyConditionExpression=c)",
        "self._client.query(**kwargs)",
        "c.update_item(TableName=t, Key=k, UpdateExpression=u)",
        "c.transact_write_items(TransactItems=[])",
    ],
)
def test_a_direct_call_is_seen(source: str) -> None:
    assert direct_calls(source) == [1]


@pytest.mark.parametrize(
    "source",
    [
        "table.query(pk)",
        "table.query(pk, sk_prefix='batch#', filter='#s = :o', values=v, names=n)",
        "table.put_if(item, 'attribute_not_exists(pk)')",
        "class StateTable:\n    def get(self):\n        return self.client.get_item(TableName=t, Key=k)",
    ],
)
def test_the_wrappers_calls_are_not(source: str) -> None:
    assert direct_calls(source, "StateTable") == []
