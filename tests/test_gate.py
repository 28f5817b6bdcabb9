"""The error-ratio gate, check_vjp(..., reference=ref_vjp) (issue 14, gradverify._gate)."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

import gradverify
from gradverify import _gate

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "examples" / "kernels" / "numpy_kernels.py"


@pytest.fixture(scope="module")
def kernels():
    spec = importlib.util.spec_from_file_location("gradverify_example_numpy_kernels", KERNELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tanh_vjp(v, x):
    return (v * (1 - np.tanh(x) ** 2),)


@pytest.mark.parametrize(
    "name", ["blocked_f16", "sequential_f16", "pairwise_f32", "sequential_f32", "half_operands_f32", "unscaled_f32"]
)
def test_example_kernels_gate(kernels, name):
    expected = kernels.CASES[name][3]
    result = kernels.check(name)
    gate = result.per_input[0].gate
    assert gate is not None
    assert result.passed is expected, str(result)
    assert gate.verdict == ("passed" if expected else "failed")
    assert result.blame == (None if expected else "analytic")
    text = str(result)
    assert "reference gate: " + gate.verdict.upper() in text
    assert "ratio" in text and f"{gate.ratio:.3g}" in text
    if expected:
        assert gate.ratio_max <= gate.k + 1  # kernel/max(reference, floor) stays near or below k
    else:
        assert gate.failures > 0 and gate.ratio > 10 and gate.ratio_max > gate.k


@pytest.mark.parametrize("name", ["sequential_f16", "half_operands_f32"])
def test_precision_bugs_pass_the_dtype_table(kernels, name):
    # The point of the gate: these kernels are within the dtype table's tolerance.
    table = kernels.check(name, gate=False)
    assert table.passed, str(table)
    assert all(p.gate is None for p in table.per_input)
    assert "reference" not in table.evaluations


def test_gate_float64_asks_the_truth():
    x = np.random.default_rng(1).normal(size=(3, 4))
    result = gradverify.check_vjp(np.tanh, tanh_vjp, x, reference=tanh_vjp)
    gate = result.per_input[0].gate
    assert result.passed and gate.verdict == "passed" and gate.undecided == 0
    assert "the reference gate asked the truth" in result.truth_note
    assert result.evaluations["reference"] == 1


def test_gate_fails_a_float64_kernel_off_by_a_few_ulps_more_than_allowed():
    x = np.random.default_rng(1).normal(size=(3, 4))

    def off(v, x):
        return (v * (1 - np.tanh(x) ** 2) * (1 + 1e-9),)

    result = gradverify.check_vjp(np.tanh, off, x, reference=tanh_vjp)
    assert not result.passed and result.blame == "analytic"
    assert result.per_input[0].gate.verdict == "failed"


def test_untrustworthy_reference_is_inconclusive():
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)

    def wrong_sign(v, x):
        return (-v * (1 - np.tanh(x) ** 2),)

    result = gradverify.check_vjp(np.tanh, tanh_vjp, x, reference=wrong_sign)
    gate = result.per_input[0].gate
    assert not result.passed and result.blame is None
    assert gate.verdict == "inconclusive" and "not a trusted computation" in gate.reason
    assert "inconclusive, the reference gate could not judge" in str(result)


def test_unresolvable_judge_is_inconclusive():
    # A judge whose own bound is far above the reference's error cannot decide.
    kernel = np.array([1.0, 2.0])
    reference = np.array([1.0 + 1e-6, 2.0])
    g = _gate.judge(kernel, reference, np.array([1.0, 2.0]), np.array([1e-3, 1e-3]), eps=2.0**-23, k=2.0)
    assert g.verdict == "inconclusive" and g.undecided == 2
    g = _gate.judge(kernel, reference, np.array([1.0, 2.0]), np.array([0.0, 0.0]), eps=2.0**-23, k=2.0)
    assert g.verdict == "passed"


def test_gate_rule_and_kink_distance():
    eps = 2.0**-10
    truth = np.array([1.0, -4.0, 0.5])
    reference = truth + np.array([1e-2, -1e-2, 0.0])
    floor = _gate.FLOOR_ULPS * eps * 4.0
    ok = truth + np.array([2e-2, 2e-2, floor])  # exactly at k * reference + floor
    assert _gate.judge(ok, reference, truth, np.zeros(3), eps=eps, k=2.0).verdict == "passed"
    over = ok + np.array([0.0, 0.0, 1e-3])
    g = _gate.judge(over, reference, truth, np.zeros(3), eps=eps, k=2.0)
    assert g.verdict == "failed" and g.failures == 1 and g.worst.index == (2,)
    # At a kink the error is the distance to the bracket: inside it is 0.
    g = _gate.judge(np.array([0.3]), np.array([0.0]), np.array([np.nan]), np.zeros(1), eps=eps, k=2.0,
                    lo=np.array([0.0]), hi=np.array([1.0]), kink=np.array([True]), scale=1.0)
    assert g.verdict == "passed" and g.kernel_error == 0.0


def test_gate_directional_mode(kernels):
    fn, x = kernels.make_op(np.float16, kernels.BATCH_F16)
    w = np.random.default_rng(1).normal(size=(kernels.FEATURES, kernels.OUTPUTS)).astype(np.float16)
    good = gradverify.check_vjp(fn, kernels.blocked_f16(x), w, reference=kernels.reference(x), mode="directional", truth="off")
    bad = gradverify.check_vjp(fn, kernels.sequential_f16(x), w, reference=kernels.reference(x), mode="directional", truth="off")
    assert good.passed, str(good)
    assert not bad.passed and bad.blame == "analytic" and bad.per_input[0].gate.verdict == "failed", str(bad)


def test_gate_result_is_json_safe_and_reproduce_carries_reference(kernels):
    result = kernels.check("sequential_f16")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["per_input"][0]["gate"]["verdict"] == "failed"
    assert "reference=" in result.reproduce and "reference_factor" not in result.reproduce
    loose = gradverify.check_vjp(*_tanh32(), reference=tanh_vjp, reference_factor=3.0, rtol=1e-9)
    assert "reference_factor=3.0" in loose.reproduce and "reference=tanh_vjp" in loose.reproduce


def _tanh32():
    return np.tanh, tanh_vjp, np.random.default_rng(3).normal(size=(2, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"reference": 3}, "reference=3 must be callable"),
        ({"reference": tanh_vjp, "reference_factor": 0.5}, "reference_factor=0.5 must be a number >= 1"),
        ({"reference": tanh_vjp, "reference_factor": True}, "reference_factor=True"),
        ({"reference": lambda v, x: (v.astype(np.float64),)}, "must compute in the dtype under test"),
        ({"reference": lambda v, x: (v, v)}, "one gradient per input"),
        ({"reference": lambda v, x: (v[:1],)}, "not an array shaped like the input"),
    ],
)
def test_invalid_reference_arguments(options, match):
    fn, vjp, x = _tanh32()
    with pytest.raises(gradverify.InvalidArgument, match=match):
        gradverify.check_vjp(fn, vjp, x, **options)
