"""Low-precision backward kernels in NumPy, right and precision-buggy, for the reference gate.

Each op is ``y = x @ w`` with the data ``x`` fixed (a large batch, closed over) and the
weights ``w`` differentiated: the weight gradient ``x.T @ v`` is a reduction over the whole
batch, where accumulation order and precision decide a kernel's error.

* ``float16``: the reference is NumPy's plain ``x.T @ v`` in float16. ``blocked_f16``
  accumulates blocks in float32 (passes the gate); ``sequential_f16`` adds row by row into
  a float16 accumulator (a real precision bug: it passes the float16 dtype table, but its
  error is many times the plain computation's).
* ``float32``: the reference is ``x.T @ v`` in float32 (BLAS). ``pairwise_f32`` sums
  blocks pairwise (passes, with a fifth of the reference's error); ``sequential_f32`` runs
  one float32 accumulator over the batch (``np.add.accumulate``) and passes too: the gate
  is relative to the plain computation, and BLAS's float32 dot products accumulate about as
  badly. ``half_operands_f32`` rounds its operands to float16 before a float32-accumulated
  product (a tensor-core path taken by mistake): about 300 times the reference's error, yet
  within the float32 dtype table, which cannot see it. ``unscaled_f32`` scales the
  cotangent by ``2**-24`` for its accumulation and adds the last block after dividing the
  scale back out (a missing rescale of that block): the gate and the table both fail it.

Run ``python examples/kernels/numpy_kernels.py`` for the verdicts and ratios.
"""

import numpy as np

import gradverify

BATCH_F16, BATCH_F32, FEATURES, OUTPUTS = 1024, 4096, 6, 4


def make_op(dtype, batch, seed=0):
    """``(fn, x)``: ``fn(w) = x @ w`` with ``x`` fixed in ``dtype``, and ``x`` itself."""
    x = np.random.default_rng(seed).normal(size=(batch, FEATURES)).astype(dtype)
    x64 = x.astype(np.float64)

    def fn(w):
        return (x64 if w.dtype == np.float64 else x) @ w

    return fn, x


def reference(x):
    """The plain backward: ``x.T @ v`` in the dtype under test."""

    def ref_vjp(v, w):
        return (x.T @ v,)

    return ref_vjp


def blocked_f16(x, block=128):
    def vjp(v, w):
        acc = np.zeros(w.shape, np.float32)
        for s in range(0, x.shape[0], block):
            acc += x[s : s + block].astype(np.float32).T @ v[s : s + block].astype(np.float32)
        return (acc.astype(np.float16),)

    return vjp


def sequential_f16(x):
    def vjp(v, w):
        acc = np.zeros(w.shape, np.float16)
        for b in range(x.shape[0]):
            acc = acc + np.outer(x[b], v[b]).astype(np.float16)  # bug: a float16 accumulator
        return (acc,)

    return vjp


def pairwise_f32(x, block=256):
    def vjp(v, w):
        parts = [x[s : s + block].T @ v[s : s + block] for s in range(0, x.shape[0], block)]
        while len(parts) > 1:
            parts = [parts[j] + parts[j + 1] if j + 1 < len(parts) else parts[j] for j in range(0, len(parts), 2)]
        return (parts[0],)

    return vjp


def sequential_f32(x):
    def vjp(v, w):
        terms = x[:, :, None] * v[:, None, :]  # (batch, features, outputs), float32
        return (np.add.accumulate(terms, axis=0)[-1],)  # bug: one running float32 sum over the batch

    return vjp


def half_operands_f32(x):
    def vjp(v, w):
        xh = x.astype(np.float16).astype(np.float32)  # bug: operands rounded to float16
        vh = v.astype(np.float16).astype(np.float32)
        return (xh.T @ vh,)

    return vjp


def unscaled_f32(x, block=256, scale=2.0**-24):
    def vjp(v, w):
        vs = v * np.float32(scale)
        acc = np.zeros(w.shape, np.float32)
        last = x.shape[0] - block
        for s in range(0, last, block):
            acc += x[s : s + block].T @ vs[s : s + block]
        acc = acc / np.float32(scale)
        acc += x[last:].T @ vs[last:]  # bug: the last block is added after the rescale (missing 1/scale)
        return (acc,)

    return vjp


CASES = {
    # name: (dtype, batch, kernel factory, expected to pass the gate)
    "blocked_f16": (np.float16, BATCH_F16, blocked_f16, True),
    "sequential_f16": (np.float16, BATCH_F16, sequential_f16, False),
    "pairwise_f32": (np.float32, BATCH_F32, pairwise_f32, True),
    "sequential_f32": (np.float32, BATCH_F32, sequential_f32, True),
    "half_operands_f32": (np.float32, BATCH_F32, half_operands_f32, False),
    "unscaled_f32": (np.float32, BATCH_F32, unscaled_f32, False),
}


def check(name, *, gate=True, seed=0, truth="off"):
    """The check of case ``name``: with ``reference=`` (the gate) or against the dtype table.

    ``truth="off"`` by default: the gradient is linear in ``w`` and the float64 finite
    difference judges it to about 1e-10 of its size, far below any float32 or float16
    error, so the high-precision truth (slow on a batch of thousands) adds nothing here.
    """
    dtype, batch, kernel, _ = CASES[name]
    fn, x = make_op(dtype, batch, seed)
    w = np.random.default_rng(seed + 1).normal(size=(FEATURES, OUTPUTS)).astype(dtype)
    options = {"reference": reference(x)} if gate else {}
    return gradverify.check_vjp(fn, kernel(x), w, name=name, seed=seed, truth=truth, **options)


if __name__ == "__main__":
    for name in CASES:
        table, gated = check(name, gate=False), check(name)
        g = gated.per_input[0].gate
        print(
            f"{name:18s} table {'pass' if table.passed else 'FAIL'}  gate {g.verdict:12s}"
            f" kernel err {g.kernel_error:.3g}  reference err {g.reference_error:.3g}  ratio {g.ratio:.3g}"
            f"  per-element ratio median {g.ratio_median:.3g} 90% {g.ratio_p90:.3g} max {g.ratio_max:.3g}"
        )
