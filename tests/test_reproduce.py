"""A failing check's reproduce line runs as printed, or says exactly what it lacks."""

import subprocess
import sys
import textwrap

import array_api_strict
import numpy as np
import pytest

import gradverify
from gradverify._reproduce import MAX_WRITTEN_ELEMENTS

USER_MODULE = textwrap.dedent(
    """
    import numpy as np

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def sigmoid_vjp(v, x):
        s = sigmoid(x)
        return (v * s * (1 + s),)  # wrong: s * (1 - s)

    def affine_forward(x, w):
        return x @ w, (x, w)

    def affine_backward(dout, cache):
        x, w = cache
        return dout @ w.T, 2 * (x.T @ dout)  # wrong: no factor 2

    def cube_sum(x):
        return ((x ** 3) * 1.0).__array_namespace__().sum(x ** 3)

    def cube_sum_grad(x):
        return 3 * x  # wrong: 3 x ** 2

    class Layers:
        @staticmethod
        def square(x):
            return x * x

        @staticmethod
        def square_vjp(v, x):
            return (v * x,)  # wrong: 2 v x

        @staticmethod
        def scaled(x, *, scale, label):
            return scale * x
    """
)

# Inputs as data: (x, w) with values that need all 17 digits, and float32 values.
X = np.array([[0.1257302210933933, -0.1321048632913019, 0.6404226504432821], [0.10490011715303971, -0.535669373161111, 0.36159505490948474]])
W32 = np.array([[0.3, -1.7], [2.25, 0.1], [-0.45, 1.3]], dtype=np.float32)


@pytest.fixture
def user(tmp_path, monkeypatch):
    (tmp_path / "user_layers.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_layers

    yield user_layers, tmp_path
    sys.modules.pop("user_layers", None)


def _rerun(line, cwd):
    proc = subprocess.run([sys.executable, "-c", line], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _checks(m):
    return [
        ("check_vjp", lambda: gradverify.check_vjp(m.sigmoid, m.sigmoid_vjp, X)),
        ("check_vjp", lambda: gradverify.check_vjp(m.sigmoid, m.sigmoid_vjp, X, cotangent=np.ones((2, 3)), mode="directional", seed=3)),
        ("check_layer", lambda: gradverify.check_layer(m.affine_forward, m.affine_backward, X, W32.astype(np.float64), rtol=1e-5)),
        ("check_grad", lambda: gradverify.check_grad(m.cube_sum, m.cube_sum_grad, array_api_strict.asarray(X))),
        ("check_vjp", lambda: gradverify.check_vjp(m.Layers.square, m.Layers.square_vjp, W32)),
    ]


@pytest.mark.parametrize("case", range(5))
def test_the_reproduce_line_runs_as_printed_and_fails_the_same_way(user, case):
    m, directory = user
    entry, run = _checks(m)[case]
    result = run()
    assert not result.passed and result.blame == "analytic"
    assert f"reproduce: {result.reproduce}" in str(result)
    line = result.reproduce
    assert line.startswith("import gradverify; ") and f"gradverify.{entry}(" in line and "#" not in line
    out = _rerun(line, directory)
    # The same verdict on the same inputs: the worst element and its analytic value agree exactly.
    assert out.startswith("gradverify: FAILED: the analytic gradient is wrong (blame: analytic)"), out
    worst = result.per_input[0].worst
    assert f"analytic   {worst.analytic:.17g}" in out


def test_written_inputs_are_the_inputs_bit_for_bit(user):
    m, directory = user
    result = gradverify.check_vjp(m.Layers.square, m.Layers.square_vjp, W32)
    code = result.reproduce.split("; print(")[0] + "; import numpy as np; x = " + result.reproduce.split("square_vjp, ", 1)[1].split(", mode=")[0] + "; print(x.tobytes().hex())"
    assert _rerun(code, directory).strip() == W32.tobytes().hex()


def test_a_line_that_cannot_run_by_itself_says_what_it_lacks(user):
    m, _ = user
    result = gradverify.check_vjp(lambda x: x * x, m.Layers.square_vjp, X)
    # The small inputs are still written out: only fn must be supplied.
    assert result.reproduce.startswith("gradverify.check_vjp(fn, Layers.square_vjp, np.asarray([[")
    assert result.reproduce.endswith("  # with the same fn: fn (a lambda) cannot be imported by name")

    big = np.linspace(-1, 1, MAX_WRITTEN_ELEMENTS + 1)
    result = gradverify.check_vjp(m.sigmoid, m.sigmoid_vjp, big)
    assert f"the inputs have {MAX_WRITTEN_ELEMENTS + 1} elements" in result.reproduce and "*inputs" in result.reproduce

    def local_forward(x):
        return x * x, x

    result = gradverify.check_layer(local_forward, lambda dout, x: (dout * x,), X)
    assert "local function local_forward" in result.reproduce and "np.asarray(" in result.reproduce


def test_a_partial_with_literal_arguments_is_written_as_one(user):
    """Catalog ops with parameters are checked through functools.partial(forward, **params)."""
    import functools

    m, directory = user
    forward = functools.partial(m.affine_forward, X)  # an array argument: not a literal
    result = gradverify.check_layer(forward, lambda dout, cache: (cache[0].T @ dout,), W32.astype(np.float64))
    assert "forward (a functools.partial of affine_forward with arguments that are not plain literals) cannot be imported" in result.reproduce
    forward = functools.partial(m.Layers.scaled, scale=2.0, label="plain")
    result = gradverify.check_vjp(forward, m.Layers.square_vjp, X)
    assert "from functools import partial" in result.reproduce
    assert "partial(Layers.scaled, scale=2.0, label='plain')" in result.reproduce
    assert _rerun(result.reproduce, directory).startswith("gradverify: FAILED: the analytic gradient is wrong")
