"""mutation_test=True (issue 14): mutants of the backward's output must fail the check."""

import importlib.util
import pathlib

import numpy as np
import pytest

import gradverify

X = np.random.default_rng(0).normal(size=(2, 3))


def tanh_vjp(v, x):
    return (v * (1 - np.tanh(x) ** 2),)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_vjp(v, x):
    s = softmax(x)
    return (s * (v - (v * s).sum(-1, keepdims=True)),)


def test_off_by_default():
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X)
    assert result.per_input[0].mutations is None and result.evaluations["vjp"] == 3


def test_both_mutants_detected_on_a_powerful_check():
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X, mutation_test=True)
    muts = result.per_input[0].mutations
    assert [m["kind"] for m in muts] == ["scale_one_element", "drop_a_term"]
    assert all(m["detected"] for m in muts) and result.warnings == []
    assert result.evaluations["vjp"] == 4  # one more call, with a cotangent entry zeroed
    assert "mutation test: scale_one_element" in str(result)


def test_blind_check_is_reported():
    # A cotangent of ones through a softmax: the gradient is 0, scaling it changes nothing.
    result = gradverify.check_vjp(softmax, softmax_vjp, X, cotangent=np.ones((2, 3)), mutation_test=True)
    muts = {m["kind"]: m["detected"] for m in result.per_input[0].mutations}
    assert muts["scale_one_element"] is False
    assert any("mutation test of input 0" in w for w in result.warnings), result.warnings
    assert "NOT detected" in str(result)


def test_loose_tolerance_misses_the_scaled_element():
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X, rtol=0.5, mutation_test=True)
    muts = {m["kind"]: m["detected"] for m in result.per_input[0].mutations}
    assert result.passed and muts["scale_one_element"] is False


def _gated_kernel_check(**options):
    """The float16 blocked kernel of examples/kernels/numpy_kernels.py against its reference."""
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "kernels" / "numpy_kernels.py"
    spec = importlib.util.spec_from_file_location("gradverify_example_numpy_kernels_m", path)
    k = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(k)
    fn, x = k.make_op(np.float16, k.BATCH_F16)
    w = np.random.default_rng(1).normal(size=(k.FEATURES, k.OUTPUTS)).astype(np.float16)
    return gradverify.check_vjp(fn, k.blocked_f16(x), w, reference=k.reference(x), truth="off", mutation_test=True, **options)


def test_mutants_against_the_gate():
    result = _gated_kernel_check()
    assert result.passed and all(m["detected"] for m in result.per_input[0].mutations)


def test_invalid_mutation_test():
    with pytest.raises(gradverify.InvalidArgument, match="mutation_test=1 must be True or False"):
        gradverify.check_vjp(np.tanh, tanh_vjp, X, mutation_test=1)


def test_directional_mutants():
    """In directional mode the mutants are judged along the directions, over all inputs."""
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X, mode="directional", mutation_test=True)
    (row,) = result.per_input
    assert row.index is None
    assert [m["kind"] for m in row.mutations] == ["scale_one_element", "drop_a_term"]
    assert all(m["detected"] for m in row.mutations) and result.warnings == []
    assert "of input 0 scaled by 1.25" in row.mutations[0]["detail"]


def test_directional_mutant_missed_at_a_loose_tolerance():
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X, mode="directional", rtol=0.5, mutation_test=True)
    muts = {m["kind"]: m["detected"] for m in result.per_input[0].mutations}
    assert result.passed and muts["scale_one_element"] is False
    assert any("mutation test of all inputs (directional)" in w for w in result.warnings), result.warnings


def test_directional_mutants_against_the_gate():
    result = _gated_kernel_check(mode="directional")
    assert result.passed and [m["kind"] for m in result.per_input[0].mutations] == ["scale_one_element", "drop_a_term"]
    assert all(m["detected"] for m in result.per_input[0].mutations)


def test_directional_mutants_over_several_inputs():
    x, w = np.random.default_rng(2).normal(size=(3, 4)), np.random.default_rng(3).normal(size=(4, 2))
    result = gradverify.check_vjp(lambda x, w: x @ w, lambda v, x, w: (v @ w.T, x.T @ v), x, w, mode="directional", mutation_test=True)
    (row,) = result.per_input
    assert result.passed and [m["kind"] for m in row.mutations] == ["scale_one_element", "drop_a_term"]
    assert all(m["detected"] for m in row.mutations) and result.evaluations["vjp"] == 4
