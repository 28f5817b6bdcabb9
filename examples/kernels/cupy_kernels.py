"""A CuPy RawKernel backward checked with the reference gate (needs a CUDA GPU and CuPy).

The op is the weight gradient of ``y = x @ w`` with a fixed float32 batch ``x`` (as in
``numpy_kernels.py``); the reference is CuPy's plain ``x.T @ v`` (cuBLAS, float32).

* ``blocked_kernel``: one thread per gradient element, float32 partial sums over blocks of
  256 rows added together at the end: passes the gate.
* ``truncated_kernel``: the same, but each operand loses its 8 lowest mantissa bits first
  (a reduced-precision path taken by mistake; plain CUDA bit operations, no fp16 header):
  a relative error per term of about 2**-16, within the float32 dtype table but far beyond
  twice cuBLAS's error, so the gate fails it.

Run ``python examples/kernels/cupy_kernels.py`` on a GPU machine for the verdicts and ratios.
"""

import numpy as np

import gradverify

BATCH, FEATURES, OUTPUTS = 4096, 6, 4

_SOURCE = r"""
extern "C" __global__
void wgrad(const float* x, const float* v, float* out, int B, int N, int M, int truncate) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N * M) return;
    int n = j / M, m = j % M;
    float total = 0.0f;
    for (int start = 0; start < B; start += 256) {
        float part = 0.0f;
        int stop = min(start + 256, B);
        for (int b = start; b < stop; ++b) {
            float a = x[b * N + n], c = v[b * M + m];
            if (truncate) {
                a = __uint_as_float(__float_as_uint(a) & 0xFFFFFF00u);
                c = __uint_as_float(__float_as_uint(c) & 0xFFFFFF00u);
            }
            part += a * c;
        }
        total += part;
    }
    out[j] = total;
}
"""


def make_op(seed=0):
    """``(fn, x)`` on the GPU: ``fn(w) = x @ w`` with ``x`` a fixed float32 batch."""
    import cupy

    x = cupy.asarray(np.random.default_rng(seed).normal(size=(BATCH, FEATURES)).astype(np.float32))
    x64 = x.astype(cupy.float64)

    def fn(w):
        return (x64 if w.dtype == cupy.float64 else x) @ w

    return fn, x


def _kernel(x, truncate):
    import cupy

    kernel = cupy.RawKernel(_SOURCE, "wgrad")

    def vjp(v, w):
        v = cupy.ascontiguousarray(v, dtype=cupy.float32)
        out = cupy.empty(w.shape, dtype=cupy.float32)
        n = out.size
        kernel(((n + 127) // 128,), (128,), (x, v, out, np.int32(x.shape[0]), np.int32(x.shape[1]), np.int32(w.shape[1]), np.int32(truncate)))
        return (out,)

    return vjp


def blocked_kernel(x):
    return _kernel(x, 0)


def truncated_kernel(x):
    return _kernel(x, 1)


def reference(x):
    def ref_vjp(v, w):
        return (x.T @ v,)

    return ref_vjp


CASES = {"blocked_kernel": (blocked_kernel, True), "truncated_kernel": (truncated_kernel, False)}


def check(name, *, gate=True, seed=0):
    """Case ``name`` with the gate (or against the dtype table); the truth is off: ``fn``
    closes over a CuPy array, which the mpmath truth cannot take, and the float64 finite
    difference of this linear op is exact to about 1e-10 of the gradient."""
    import cupy

    kernel, _ = CASES[name]
    fn, x = make_op(seed)
    w = cupy.asarray(np.random.default_rng(seed + 1).normal(size=(FEATURES, OUTPUTS)).astype(np.float32))
    options = {"reference": reference(x)} if gate else {}
    return gradverify.check_vjp(fn, kernel(x), w, name=name, seed=seed, truth="off", **options)


if __name__ == "__main__":
    for name in CASES:
        table, gated = check(name, gate=False), check(name)
        g = gated.per_input[0].gate
        print(
            f"{name:16s} table {'pass' if table.passed else 'FAIL'}  gate {g.verdict:12s}"
            f" kernel err {g.kernel_error:.3g}  reference err {g.reference_error:.3g}  ratio {g.ratio if g.ratio is None else f'{g.ratio:.3g}'}"
            f"  per-element ratio median {g.ratio_median:.3g} 90% {g.ratio_p90:.3g} max {g.ratio_max:.3g}"
        )
