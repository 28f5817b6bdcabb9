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


def test_golden_tables_are_up_to_date(monkeypatch):
    """Recomputed from the stored inputs: nothing is drawn, and no float64 ``exp`` or BLAS runs."""
    from reference import golden

    def boom(*args, **kwargs):
        raise AssertionError("--check recomputed an input: inputs are data, read from the tables")

    cases = golden.cases()
    monkeypatch.setattr(golden, "cases", lambda: [c._replace(draw=boom) for c in cases])
    for name in ("exp", "log", "matmul", "dot"):
        monkeypatch.setattr(np, name, boom)
    monkeypatch.setattr(np.linalg, "eigh", boom)
    assert golden.main(["--check"]) == 0


def _spec_and_table(label):
    from reference import golden

    spec = next(c for c in golden.cases() if golden.table_name(c.op, c.case) == label)
    return spec, json.loads((ROOT / "reference" / "golden" / f"{label}.json").read_text())


def _nudge_text(s, rel):
    import mpmath

    with mpmath.workdps(60):
        return mpmath.nstr(mpmath.mpf(s) * (1 + mpmath.mpf(rel)), 50)


def _one_ulp(x):
    return float(np.nextafter(x, np.inf))


# (table, what is changed, how): each makes the table really stale, below float64's resolution
# for most of them, and must be caught.
TAMPERED = {
    "forward 1e-20 off": ("softmax", lambda t: t["forward"]["values"].__setitem__(0, _nudge_text(t["forward"]["values"][0], "1e-20"))),
    "vjp element negated": ("linear", lambda t: t["vjp"][1]["values"].__setitem__(2, str(-float(t["vjp"][1]["values"][2])))),
    "input one ulp (np.exp-made)": ("softmax_cross_entropy_probs", lambda t: t["inputs"][1][0].__setitem__(0, _one_ulp(t["inputs"][1][0][0]))),
    "input one ulp (PCA eigenvector)": ("pca_projection", lambda t: t["inputs"][2][0].__setitem__(0, _one_ulp(t["inputs"][2][0][0]))),
    "cotangent one ulp": ("tanh", lambda t: t["cotangent"][0].__setitem__(0, _one_ulp(t["cotangent"][0][0]))),
    "params": ("sgd", lambda t: t["params"].__setitem__("lr", 0.2)),
    "vjp dropped": ("mse", lambda t: t["vjp"].__setitem__(1, None)),
}


@pytest.mark.parametrize("change", list(TAMPERED), ids=list(TAMPERED))
def test_a_stale_table_is_caught(change):
    from reference import golden

    label, tamper = TAMPERED[change]
    spec, table = _spec_and_table(label)
    assert golden.check_table(spec, table) is None
    tamper(table)
    assert golden.check_table(spec, table) is not None, f"{label}: {change} went unnoticed"


def test_an_edited_oracle_makes_its_table_stale(monkeypatch):
    from reference import golden, oracles

    spec, table = _spec_and_table("tanh")
    monkeypatch.setattr(oracles, "tanh", lambda ctx, x: oracles._map(lambda t: ctx.tanh(t) * (1 + ctx.mpf("1e-25")), x))
    assert "forward" in golden.check_table(spec, table)


def test_last_digit_noise_is_not_stale():
    """Another mpmath may differ in the last digits of a 50-digit value; that is no change."""
    from reference import golden

    spec, table = _spec_and_table("softmax_cross_entropy_probs")
    for entry in [table["forward"]] + [e for e in table["vjp"] if e]:
        entry["values"] = [_nudge_text(s, "-3e-40" if k % 2 else "3e-40") for k, s in enumerate(entry["values"])]
    assert golden.check_table(spec, table) is None


def test_check_reports_a_tampered_copy(tmp_path, capsys):
    """The command itself, on a copy: a stale table, a missing one and an orphan, each named."""
    import shutil

    from reference import golden

    tables = tmp_path / "golden"
    shutil.copytree(ROOT / "reference" / "golden", tables)
    path = tables / "pca_whitening.json"
    table = json.loads(path.read_text())
    table["inputs"][3][0] = _one_ulp(table["inputs"][3][0])  # a stored PCA variance, one ulp up
    path.write_text(json.dumps(table, indent=1) + "\n")
    (tables / "relu.json").unlink()
    (tables / "nothing.json").write_text("{}\n")
    assert golden.main(["--check", "--tables", str(tables)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("stale or missing: relu (missing), pca_whitening (forward: element "), out
    assert out.rstrip().endswith("; no case makes: nothing") and out.count("), ") == 1, out


def test_reference_never_imports_gradverify():
    for path in (ROOT / "reference").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            module = node.module if isinstance(node, ast.ImportFrom) else ""
            assert not any(n.split(".")[0] == "gradverify" for n in names + [module or ""]), f"{path.name} imports gradverify"


def test_write_keeps_the_stored_inputs_and_redraw_draws_afresh(tmp_path):
    """``--write`` regenerates a table from its stored inputs (no churn from a machine's own
    ``np.exp`` or BLAS); ``--redraw`` draws new ones, and the result checks."""
    import shutil

    from reference import golden

    tables = tmp_path / "golden"
    shutil.copytree(ROOT / "reference" / "golden", tables)
    (tables / "sigmoid.json").unlink()
    assert golden.main(["--write", "--tables", str(tables), "--redraw", "softmax_cross_entropy_probs"]) == 0
    for path in TABLES:
        same = (tables / path.name).read_bytes() == path.read_bytes()
        assert same == (path.stem not in ("sigmoid", "softmax_cross_entropy_probs")), path.name
    assert golden.main(["--check", "--tables", str(tables)]) == 0
