"""The catalog against the independent oracles in reference/, through their golden tables."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from gradverify import catalog

ROOT = Path(__file__).resolve().parent.parent
TABLES = sorted((ROOT / "reference" / "golden").glob("*.json"))
# float64 implementations against 50-digit values: relative to the largest value of the array.
RTOL = 1e-12


def _ops_by_reference():
    return {catalog.get(n).reference: catalog.get(n) for n in catalog.names() if catalog.get(n).reference}


def _table_ops():
    """``{table name: oracle name}``: a table is ``<op>.json`` or ``<op>-<case>.json``."""
    return {p.stem: json.loads(p.read_text())["op"] for p in TABLES}


def _values(entry):
    return np.array([float(s) for s in entry["values"]]).reshape(entry["shape"])


def _assert_close(got, want, what):
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    scale = max(np.max(np.abs(want), initial=0.0), 1e-300)
    worst = np.max(np.abs(got - want), initial=0.0) / scale
    assert worst <= RTOL, f"{what}: worst error {worst:.3g} of the largest value (rtol {RTOL:g})\ngot  {got}\nwant {want}"


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_catalog_matches_the_golden_table(path):
    table = json.loads(path.read_text())
    assert path.stem == (table["op"] if "case" not in table else f"{table['op']}-{table['case']}"), f"{path.name} holds op {table['op']!r}, case {table.get('case')!r}"
    op = _ops_by_reference().get(table["op"])
    assert op is not None, f"no catalog op for the oracle {table['op']!r}"
    inputs = [np.asarray(a, dtype=t) for a, t in zip(table["inputs"], table["input_dtypes"])]
    out, cache = op.forward(*inputs, **table["params"])
    _assert_close(out, _values(table["forward"]), f"{op.name} forward")
    grads = op.backward(np.asarray(table["cotangent"], dtype=np.float64).reshape(np.shape(out)), cache)
    for i, entry in enumerate(table["vjp"]):
        if entry is not None and (op.wrt is None or i in op.wrt):
            _assert_close(grads[i], _values(entry), f"{op.name} vjp of input {i}")


def test_every_table_has_a_catalog_op_and_every_oracle_is_used():
    from reference import oracles

    names = set(_table_ops().values())
    orphans = names - set(_ops_by_reference())
    assert not orphans, f"tables of oracles no catalog op answers to: {orphans}"
    public = {n for n in vars(oracles) if not n.startswith("_") and callable(getattr(oracles, n)) and n != "np"}
    assert public <= names, f"oracles without a golden table: {public - names}"
    assert names <= public, f"tables without an oracle: {names - public}"


def test_golden_tables_are_up_to_date():
    from reference import golden

    assert golden.main(["--check"]) == 0


def test_reference_never_imports_gradverify():
    for path in (ROOT / "reference").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            module = node.module if isinstance(node, ast.ImportFrom) else ""
            assert not any(n.split(".")[0] == "gradverify" for n in names + [module or ""]), f"{path.name} imports gradverify"
