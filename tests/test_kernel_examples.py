"""The kernel examples of examples/kernels (issue 14): NumPy on every backend run, CuPy's RawKernel in the cupy env."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "examples" / "kernels"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"gradverify_example_{name}", KERNELS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_kernels_script_prints_the_verdicts():
    done = subprocess.run([sys.executable, str(KERNELS / "numpy_kernels.py")], capture_output=True, text=True, timeout=300, check=True)
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "gate passed" in lines["blocked_f16"] and "gate failed" in lines["sequential_f16"], done.stdout
    assert "table pass" in lines["sequential_f16"] and "table pass" in lines["half_operands_f32"], done.stdout


def test_cupy_rawkernel_example(xp):
    # Runs in tox's cupy env (GRADVERIFY_BACKENDS=cupy, on a GPU); the other backends have no RawKernel.
    if "cupy" not in getattr(xp, "__name__", ""):
        pytest.skip("the CuPy RawKernel example runs on the cupy backend (tox -e cupy, on a CUDA GPU)")
    kernels = _load("cupy_kernels")
    good, bad = kernels.check("blocked_kernel"), kernels.check("truncated_kernel")
    assert good.passed and good.per_input[0].gate.verdict == "passed", str(good)
    assert not bad.passed and bad.per_input[0].gate.verdict == "failed" and bad.blame == "analytic", str(bad)
    assert kernels.check("truncated_kernel", gate=False).passed  # the float32 dtype table cannot see it


def test_readme_kernel_section_example_runs_as_written():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Low-precision kernels: the reference gate", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    import gradverify

    fn, kernel, ref, w = namespace["fn"], namespace["kernel_vjp"], namespace["ref_vjp"], namespace["w"]
    assert gradverify.check_vjp(fn, kernel, w).passed  # the dtype table cannot see the float16 accumulator
    gated = gradverify.check_vjp(fn, kernel, w, reference=ref)
    assert not gated.passed and gated.per_input[0].gate.ratio > 10
