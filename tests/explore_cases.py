"""Gradient bugs that hide on the typical example, as data for the ``explore=N`` proof (issue 12).

Each :class:`ExploreCase` holds a deliberately wrong forward/VJP pair that is right on its
typical example (``inputs``) and wrong only on some kind of variant (``trigger``; ``variant()``
returns one), next to its correct counterpart. The code is written the way NumPy users write
layers: scratch buffers, in-place ``+=``, ``np.maximum(x, 0.0)``, loops over indices. No tests
here; the test that drives explore over these cases lives elsewhere.

Fields
------
- ``fn``/``vjp``: the wrong pair; ``correct_fn``/``correct_vjp``: the right one. ``vjp(v, *inputs)``
  returns one gradient per input, ``None`` for inputs outside ``wrt``.
- ``inputs``: the typical example, a fixed tuple (float64; integer arrays for labels/indices).
- ``options``: extra ``check_vjp`` keywords, including the explore ones ``domains`` ({input
  position: "real" | "positive" | "nonnegative" | "probability" | "probability_rows" | "logits" |
  ("index", (position, axis))}) and ``allow_nonfinite``.
- ``finding``: the kind explore must report for the wrong pair: "gradient", "raises" or
  "nonfinite".

Validation (NumPy 2.4.6, gradverify at cd91901, NumPy inputs, each case's options without
``domains`` and ``allow_nonfinite``, seed 0): for all 23 cases

1. the wrong pair passes ``check_vjp`` on ``inputs``;
2. on ``variant()`` it does not: "gradient" cases fail with ``blame="analytic"``, "raises" cases
   raise ``UserFunctionError`` (vjp or fn raised IndexError), "nonfinite" cases have a
   non-finite ``fn(*variant())`` (check_vjp: STRUCTURAL nonfinite_output) while the correct
   forward is finite;
3. the correct pair passes on ``inputs`` and on ``variant()``, with a finite forward.

The correct pairs also passed on 25 random value variants each (declared domains: scales
1e-3..1e3 with exact zeros, all-negative rows and ties for "real"; magnitudes to 2000 for
"logits"; values within 1e-14 of 0 and 1 for the probabilities; duplicate and extreme labels)
and on 2-5 hand-picked shape variants each (batch size 1, size-1 and unequal dimensions):
no false alarm, except the declared singularity (l2 rows: a zero row, or a row of 1e-200
whose squares underflow, gives 0/0).

What the engine says on the wrong pairs, beyond the declared finding:

- max-pool with ties: in full mode a mask that gives v to both tied maxima passed (each tied
  element was judged alone against [0, v]) until full mode learned to judge a tie's
  gradients together (gradverify._ties); the case ran in ``mode="directional"`` until then.
- leaky ReLU's wrong pair fails as STRUCTURAL ignores_cotangent (blame "analytic"), the L1
  ratio as STRUCTURAL nonfinite_gradient (blame "analytic").
- squeeze mean: a (1, 1, 1) input raises (np.mean over axis 0 of a 0-d array) instead.
- per-row loop over range(3): a batch above 3 passes (fn and vjp ignore the same rows).
- clip cross-entropy: on some variants with a probability within 2**-12 (relative) of the
  upper clip, the failure reads STRUCTURAL fn_not_float64 (blame None) instead of
  blame "analytic": the quantization probe's direction is proportional to |x|, along which
  the slope of a sum of logs is a sum of +-1/N terms that can cancel to exactly 0.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CASES", "ExploreCase"]


@dataclass(frozen=True, kw_only=True)
class ExploreCase:
    name: str
    fn: object
    vjp: object
    correct_fn: object
    correct_vjp: object
    inputs: object  # tuple of arrays (or seed -> tuple)
    finding: str  # "gradient", "raises" or "nonfinite"
    trigger: str
    variant: object  # () -> tuple of arrays showing the bug
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.finding not in ("gradient", "raises", "nonfinite"):
            msg = f"{self.name}: finding must be 'gradient', 'raises' or 'nonfinite', got {self.finding!r}"
            raise ValueError(msg)


def _rng(k):
    return np.random.default_rng(1200 + k)


def _softmax_rows(x):
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- 1. squeeze of an (N, 1) column: raises for batch size 1 -------------------------------


def linear1(x, w):
    return x @ w  # (N, D) @ (D, 1) -> (N, 1)


def linear1_vjp_squeeze(v, x, w):
    g = np.squeeze(v)  # mistake: squeeze drops the batch axis too when N == 1
    dx = g[:, None] * w[:, 0]
    dw = (x * g[:, None]).sum(axis=0)[:, None]
    return dx, dw


def linear1_vjp(v, x, w):
    return v @ w.T, x.T @ v


# -- 2. squeeze before a mean over the batch: wrong for batch size 1 -----------------------


def pool_mean_squeeze(x):
    h = x.squeeze()  # mistake: (N, 1, D) -> (D,) when N == 1, and the mean then runs over D
    return h.mean(axis=0)


def pool_mean_squeeze_vjp(v, x):
    N = x.shape[0]
    dx = np.ones_like(x) * v / N
    return (dx,)


def pool_mean(x):
    return x[:, 0, :].mean(axis=0)


def pool_mean_vjp(v, x):
    dx = np.zeros_like(x)
    dx[:, 0, :] = v / x.shape[0]
    return (dx,)


# -- 3. reshape where a transpose belongs: right only while the head has one output ---------


def dense(x, w):
    return x @ w


def dense_vjp_reshape(v, x, w):
    dx = v @ w.T
    dw = (v.T @ x).reshape(w.shape)  # mistake: reshape, not transpose; equal only when K == 1
    return dx, dw


def dense_vjp(v, x, w):
    return v @ w.T, x.T @ v


# -- 4. mean over axis 0 divided by the other size: right only when N == D -----------------


def col_mean(x):
    N, D = x.shape
    return x.sum(axis=0) / N


def col_mean_vjp_swapped(v, x):
    D, N = x.shape  # mistake: unpacked in the wrong order
    dx = np.ones_like(x) * v / N
    return (dx,)


def col_mean_vjp(v, x):
    N, D = x.shape
    return (np.ones_like(x) * v / N,)


# -- 5. hard-coded batch size in an MSE backward -------------------------------------------


def mse(pred, y):
    N = pred.shape[0]
    return ((pred - y) ** 2).sum() / N


def mse_vjp_hardcoded(v, pred, y):
    batch_size = 8  # mistake: the batch size of the example, hard-coded
    return (2.0 * (pred - y) * v / batch_size, None)


def mse_vjp(v, pred, y):
    return (2.0 * (pred - y) * v / pred.shape[0], None)


# -- 6. softmax without max-subtraction: inf/inf above ~709 --------------------------------


def softmax_naive(x):
    e = np.exp(x)  # mistake: no max-subtraction
    return e / e.sum(axis=1, keepdims=True)


def _softmax_vjp_from(p, v):
    return p * (v - (v * p).sum(axis=1, keepdims=True))


def softmax_naive_vjp(v, x):
    return (_softmax_vjp_from(softmax_naive(x), v),)


def softmax(x):
    return _softmax_rows(x)


def softmax_vjp(v, x):
    return (_softmax_vjp_from(_softmax_rows(x), v),)


# -- 7. log-sum-exp without max-subtraction -----------------------------------------------


def lse_naive(x):
    return np.log(np.exp(x).sum(axis=1))  # mistake: exp overflows above ~709


def lse_naive_vjp(v, x):
    e = np.exp(x)
    return (v[:, None] * e / e.sum(axis=1, keepdims=True),)


def lse(x):
    m = x.max(axis=1, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]


def lse_vjp(v, x):
    return (v[:, None] * _softmax_rows(x),)


# -- 8. log-softmax as log(softmax): log(0) when a logit trails the max by > ~745 ------------


def log_softmax_via_log(x):
    return np.log(_softmax_rows(x))  # mistake: the probability underflows to 0 first


def log_softmax_vjp(v, x):
    p = _softmax_rows(x)
    return (v - p * v.sum(axis=1, keepdims=True),)


def log_softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# -- 9. softmax cross-entropy without max-subtraction --------------------------------------


def softmax_ce_naive(x, y):
    N = x.shape[0]
    e = np.exp(x)  # mistake: no max-subtraction
    p = e / e.sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(N), y]).sum() / N


def softmax_ce_naive_vjp(v, x, y):
    N = x.shape[0]
    e = np.exp(x)
    dx = e / e.sum(axis=1, keepdims=True)
    dx[np.arange(N), y] -= 1
    return (dx * v / N, None)


def softmax_ce(x, y):
    N = x.shape[0]
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(N), y].sum() / N


def softmax_ce_vjp(v, x, y):
    N = x.shape[0]
    dx = _softmax_rows(x)
    dx[np.arange(N), y] -= 1
    return (dx * v / N, None)


# -- 10. sigmoid written as exp(x) / (1 + exp(x)) ----------------------------------------


def sigmoid_naive(x):
    e = np.exp(x)
    return e / (1.0 + e)  # mistake: inf / inf above ~709


def sigmoid_naive_vjp(v, x):
    s = sigmoid_naive(x)
    return (v * s * (1.0 - s),)


def sigmoid(x):
    return _sigmoid(x)


def sigmoid_vjp(v, x):
    s = _sigmoid(x)
    return (v * s * (1.0 - s),)


# -- 11. log-sigmoid with a "saturated" branch whose gradient is 0 --------------------------


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def log_sigmoid_vjp_saturated(v, x):
    s = _sigmoid(x)
    g = np.where(x < -30.0, 0.0, 1.0 - s)  # mistake: "saturated, no gradient"; it is ~1 there
    return (v * g,)


def log_sigmoid_vjp(v, x):
    return (v * (1.0 - _sigmoid(x)),)


# -- 12. L1 loss with sign written as x / |x|: NaN at exact zeros ---------------------------


def l1(x):
    return np.abs(x).sum()


def l1_vjp_ratio(v, x):
    return (v * x / np.abs(x),)  # mistake: 0/0 at x == 0


def l1_vjp(v, x):
    return (v * np.sign(x),)


# -- 13. binary cross-entropy with a clip the backward ignores ------------------------------

_EPS = 1e-7


def bce_clip(p, y):
    pc = np.clip(p, _EPS, 1.0 - _EPS)
    return -np.mean(y * np.log(pc) + (1.0 - y) * np.log(1.0 - pc))


def bce_clip_vjp_noclip(v, p, y):
    N = p.size
    return (v * (p - y) / (p * (1.0 - p)) / N, None)  # mistake: no zero where the clip is active


def bce_clip_vjp(v, p, y):
    pc = np.clip(p, _EPS, 1.0 - _EPS)
    inside = (p > _EPS) & (p < 1.0 - _EPS)
    return (v * inside * (pc - y) / (pc * (1.0 - pc)) / p.size, None)


# -- 14. cross-entropy on probability rows with a clip the backward ignores -----------------


def nll_clip(p, y):
    N = p.shape[0]
    pc = np.clip(p, _EPS, 1.0)
    return -np.log(pc[np.arange(N), y]).sum() / N


def nll_clip_vjp_noclip(v, p, y):
    N = p.shape[0]
    dp = np.zeros_like(p)
    dp[np.arange(N), y] = -v / (N * p[np.arange(N), y])  # mistake: ignores the clip at 1e-7
    return (dp, None)


def nll_clip_vjp(v, p, y):
    N = p.shape[0]
    picked = p[np.arange(N), y]
    dp = np.zeros_like(p)
    dp[np.arange(N), y] = -v * (picked > _EPS) / (N * np.maximum(picked, _EPS))
    return (dp, None)


# -- 15. embedding backward with grad[idx] += g: loses duplicate indices --------------------


def embed(W, idx):
    return W[idx]


def embed_vjp_fancy(v, W, idx):
    dW = np.zeros_like(W)
    dW[idx] += v  # mistake: buffered, a repeated index keeps one row of v
    return (dW, None)


def embed_vjp(v, W, idx):
    dW = np.zeros_like(W)
    np.add.at(dW, idx, v)
    return (dW, None)


# -- 16. ELU whose negative branch forgets alpha -------------------------------------------


def elu(x):
    return np.where(x > 0, x, np.exp(np.minimum(x, 0.0)) - 1.0)  # alpha = 1


def elu_vjp_noalpha(v, x):
    out = elu(x)
    return (v * np.where(x > 0, 1.0, out),)  # mistake: out, not out + alpha


def elu_vjp(v, x):
    out = elu(x)
    return (v * np.where(x > 0, 1.0, out + 1.0),)


# -- 17. leaky ReLU whose negative branch drops the upstream gradient -----------------------


def leaky_relu(x):
    return np.maximum(x, 0.01 * x)


def leaky_relu_vjp_nov(v, x):
    dx = v * (x > 0)
    dx += 0.01 * (x <= 0)  # mistake: 0.01, not 0.01 * v
    return (dx,)


def leaky_relu_vjp(v, x):
    dx = v * (x > 0)
    dx += 0.01 * v * (x <= 0)
    return (dx,)


# -- 18. max-pool (width 2) whose backward routes to every tied maximum ---------------------


def maxpool2(x):
    N, L = x.shape
    return x.reshape(N, L // 2, 2).max(axis=2)


def maxpool2_vjp_mask(v, x):
    N, L = x.shape
    out = maxpool2(x)
    mask = x.reshape(N, L // 2, 2) == out[:, :, None]  # mistake: both winners of a tie get v
    return ((mask * v[:, :, None]).reshape(N, L),)


def maxpool2_vjp(v, x):
    N, L = x.shape
    win = x.reshape(N, L // 2, 2).argmax(axis=2)
    dx = np.zeros_like(x).reshape(N, L // 2, 2)
    for i in range(N):
        for j in range(L // 2):
            dx[i, j, win[i, j]] = v[i, j]
    return (dx.reshape(N, L),)


# -- 19. batch norm with the unbiased variance: 0/0 for batch size 1 ------------------------

_BN_EPS = 1e-5


def _bn(x, gamma, beta, ddof):
    N = x.shape[0]
    mu = x.sum(axis=0) / N
    xc = x - mu
    var = (xc * xc).sum(axis=0) / (N - ddof)
    xhat = xc / np.sqrt(var + _BN_EPS)
    return gamma * xhat + beta


def _bn_vjp(v, x, gamma, beta, ddof):
    N = x.shape[0]
    mu = x.sum(axis=0) / N
    xc = x - mu
    var = (xc * xc).sum(axis=0) / (N - ddof)
    inv = 1.0 / np.sqrt(var + _BN_EPS)
    xhat = xc * inv
    dgamma = (v * xhat).sum(axis=0)
    dbeta = v.sum(axis=0)
    dxhat = v * gamma
    dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv**3
    dmu = -(dxhat * inv).sum(axis=0)
    dx = dxhat * inv + dvar * 2.0 * xc / (N - ddof) + dmu / N
    return dx, dgamma, dbeta


def batchnorm_unbiased(x, gamma, beta):
    return _bn(x, gamma, beta, ddof=1)  # mistake: N - 1 in the batch variance


def batchnorm_unbiased_vjp(v, x, gamma, beta):
    return _bn_vjp(v, x, gamma, beta, ddof=1)


def batchnorm(x, gamma, beta):
    return _bn(x, gamma, beta, ddof=0)


def batchnorm_vjp(v, x, gamma, beta):
    return _bn_vjp(v, x, gamma, beta, ddof=0)


# -- 20. per-row loop over range(3): the batch size of the example --------------------------


def softmax_ce_loop3(x, y):
    loss = 0.0
    for i in range(3):  # mistake: hard-coded batch of 3
        z = x[i] - x[i].max()
        loss += np.log(np.exp(z).sum()) - z[y[i]]
    return loss / 3


def softmax_ce_loop3_vjp(v, x, y):
    dx = np.zeros_like(x)
    for i in range(3):  # mistake: hard-coded batch of 3
        z = np.exp(x[i] - x[i].max())
        p = z / z.sum()
        p[y[i]] -= 1
        dx[i] = v * p / 3
    return (dx, None)


def softmax_ce_loop(x, y):
    N = x.shape[0]
    loss = 0.0
    for i in range(N):
        z = x[i] - x[i].max()
        loss += np.log(np.exp(z).sum()) - z[y[i]]
    return loss / N


def softmax_ce_loop_vjp(v, x, y):
    N = x.shape[0]
    dx = np.zeros_like(x)
    for i in range(N):
        z = np.exp(x[i] - x[i].max())
        p = z / z.sum()
        p[y[i]] -= 1
        dx[i] = v * p / N
    return (dx, None)


# -- 21. channels-last flatten whose backward reshapes without un-permuting ------------------


def flatten_cl_tanh(x):
    N = x.shape[0]
    feats = x.transpose(0, 2, 1).reshape(N, -1)  # (N, C, L) -> (N, L * C), channels last
    return np.tanh(feats)


def flatten_cl_tanh_vjp_reshape(v, x):
    out = flatten_cl_tanh(x)
    dfeats = v * (1.0 - out * out)
    return (dfeats.reshape(x.shape),)  # mistake: assumes the flatten was of x itself; right when C == 1


def flatten_cl_tanh_vjp(v, x):
    N, C, L = x.shape
    out = flatten_cl_tanh(x)
    dfeats = v * (1.0 - out * out)
    return (dfeats.reshape(N, L, C).transpose(0, 2, 1),)


# -- 22. softmax cross-entropy, label loop off by one: wrong only for label C - 1 ------------


def softmax_ce_lastclass_vjp(v, x, y):
    N, C = x.shape
    dx = _softmax_rows(x)
    for i in range(N):
        for j in range(C - 1):  # mistake: off by one, never reaches class C - 1
            if j == y[i]:
                dx[i, j] -= 1
    return (dx * v / N, None)


# -- 23. l2-normalised rows (singular at a zero row), backward sums the projection over all rows


def l2_normalize(x):
    return x / np.sqrt((x * x).sum(axis=1, keepdims=True))


def l2_normalize_vjp_allrows(v, x):
    n = np.sqrt((x * x).sum(axis=1, keepdims=True))
    y = x / n
    proj = (v * y).sum()  # mistake: forgot axis=1, keepdims=True; right for a single row
    return ((v - y * proj) / n,)


def l2_normalize_vjp(v, x):
    n = np.sqrt((x * x).sum(axis=1, keepdims=True))
    y = x / n
    proj = (v * y).sum(axis=1, keepdims=True)
    return ((v - y * proj) / n,)


# -- typical examples and variants -----------------------------------------------------------

_X43 = _rng(1).standard_normal((4, 3))
_W31 = _rng(2).standard_normal((3, 1))
_X4_1_5 = _rng(3).standard_normal((4, 1, 5))
_X52 = _rng(4).standard_normal((5, 2))
_W21 = _rng(5).standard_normal((2, 1))
_X44 = _rng(6).standard_normal((4, 4))
_PRED8 = _rng(7).standard_normal((8, 2))
_Y8 = _rng(8).standard_normal((8, 2))
_LOGITS = 3.0 * _rng(9).standard_normal((3, 5))
_LABELS3 = np.array([4, 0, 2])
_BIGLOGITS = _LOGITS.copy()
_BIGLOGITS[1, 2] = 800.0
_GAPLOGITS = _LOGITS.copy()
_GAPLOGITS[0, 3] = -800.0
_XS = 2.0 * _rng(10).standard_normal((3, 4))
_X_TYPICAL = _rng(11).standard_normal((3, 4))
_X_ZEROS = _X_TYPICAL.copy()
_X_ZEROS[0, 1] = 0.0
_X_ZEROS[2, 3] = 0.0
_P = _rng(12).uniform(0.05, 0.95, (2, 4))
_YB = (_rng(13).uniform(size=(2, 4)) < 0.5).astype(float)
_P_EXTREME = _P.copy()
_P_EXTREME[0, 0] = 1e-9
_P_EXTREME[1, 2] = 1.0 - 1e-9
_PROWS = _softmax_rows(_rng(14).standard_normal((4, 3)))
_YROWS = np.array([0, 2, 1, 1])
_PROWS_EXTREME = _PROWS.copy()
_PROWS_EXTREME[2, :] = [0.5, 1e-9, 0.5 - 1e-9]
_W_EMB = _rng(15).standard_normal((6, 3))
_IDX = np.array([4, 0, 2, 5])
_IDX_DUP = np.array([4, 0, 4, 4])
_X_POS = _rng(16).uniform(0.1, 2.0, (3, 4))
_X_MIXED = _rng(17).standard_normal((3, 4))
_X_MIXED[0, 0] = -1.5
_XPOOL = _rng(18).standard_normal((3, 6))
_XPOOL_TIES = _XPOOL.copy()
_XPOOL_TIES[0, 1] = _XPOOL_TIES[0, 0]
_XPOOL_TIES[2, 5] = _XPOOL_TIES[2, 4]
_XPOOL_TIES[1, 2] = _XPOOL_TIES[1, 3]
_XBN = _rng(19).standard_normal((4, 3))
_GAMMA = _rng(20).uniform(0.5, 1.5, 3)
_BETA = _rng(21).standard_normal(3)
_X34 = _rng(22).standard_normal((3, 4))
_Y3 = np.array([1, 3, 0])
_XCL = _rng(23).standard_normal((4, 1, 6))
_XCE = _rng(24).standard_normal((4, 5))
_YCE = np.array([0, 2, 1, 3])  # never the last class, 4
_XROW = _rng(25).standard_normal((1, 6))

CASES = (
    ExploreCase(
        name="linear head: np.squeeze of the (N, 1) upstream gradient",
        fn=linear1, vjp=linear1_vjp_squeeze, correct_fn=linear1, correct_vjp=linear1_vjp,
        inputs=(_X43, _W31), options={"domains": {0: "real", 1: "real"}},
        finding="raises", trigger="batch size 1",
        variant=lambda: (_X43[:1].copy(), _W31),
    ),
    ExploreCase(
        name="mean pool over the batch after np.squeeze of (N, 1, D)",
        fn=pool_mean_squeeze, vjp=pool_mean_squeeze_vjp, correct_fn=pool_mean, correct_vjp=pool_mean_vjp,
        inputs=(_X4_1_5,), options={"domains": {0: "real"}},
        finding="gradient", trigger="batch size 1",
        variant=lambda: (_X4_1_5[:1].copy(),),
    ),
    ExploreCase(
        name="dense: dW by reshape instead of transpose",
        fn=dense, vjp=dense_vjp_reshape, correct_fn=dense, correct_vjp=dense_vjp,
        inputs=(_X52, _W21), options={"domains": {0: "real", 1: "real"}},
        finding="gradient", trigger="more than one output (K > 1)",
        variant=lambda: (_X52, _rng(26).standard_normal((2, 3))),
    ),
    ExploreCase(
        name="column mean: N and D unpacked in the wrong order",
        fn=col_mean, vjp=col_mean_vjp_swapped, correct_fn=col_mean, correct_vjp=col_mean_vjp,
        inputs=(_X44,), options={"domains": {0: "real"}},
        finding="gradient", trigger="N != D",
        variant=lambda: (_X44[:, :3].copy(),),
    ),
    ExploreCase(
        name="mse: batch size 8 hard-coded in the backward",
        fn=mse, vjp=mse_vjp_hardcoded, correct_fn=mse, correct_vjp=mse_vjp,
        inputs=(_PRED8, _Y8), options={"wrt": (0,), "domains": {0: "real", 1: "real"}},
        finding="gradient", trigger="batch size != 8",
        variant=lambda: (_PRED8[:3].copy(), _Y8[:3].copy()),
    ),
    ExploreCase(
        name="softmax without max-subtraction",
        fn=softmax_naive, vjp=softmax_naive_vjp, correct_fn=softmax, correct_vjp=softmax_vjp,
        inputs=(_LOGITS,), options={"domains": {0: "logits"}},
        finding="nonfinite", trigger="logits > 709",
        variant=lambda: (_BIGLOGITS,),
    ),
    ExploreCase(
        name="log-sum-exp without max-subtraction",
        fn=lse_naive, vjp=lse_naive_vjp, correct_fn=lse, correct_vjp=lse_vjp,
        inputs=(_LOGITS,), options={"domains": {0: "logits"}},
        finding="nonfinite", trigger="logits > 709",
        variant=lambda: (_BIGLOGITS,),
    ),
    ExploreCase(
        name="log-softmax as np.log(softmax(x))",
        fn=log_softmax_via_log, vjp=log_softmax_vjp, correct_fn=log_softmax, correct_vjp=log_softmax_vjp,
        inputs=(_LOGITS,), options={"domains": {0: "logits"}},
        finding="nonfinite", trigger="a logit more than ~745 below its row's max",
        variant=lambda: (_GAPLOGITS,),
    ),
    ExploreCase(
        name="softmax cross-entropy without max-subtraction",
        fn=softmax_ce_naive, vjp=softmax_ce_naive_vjp, correct_fn=softmax_ce, correct_vjp=softmax_ce_vjp,
        inputs=(_LOGITS, _LABELS3),
        options={"wrt": (0,), "domains": {0: "logits", 1: ("index", (0, 1))}},
        finding="nonfinite", trigger="logits > 709",
        variant=lambda: (_BIGLOGITS, _LABELS3),
    ),
    ExploreCase(
        name="sigmoid as exp(x) / (1 + exp(x))",
        fn=sigmoid_naive, vjp=sigmoid_naive_vjp, correct_fn=sigmoid, correct_vjp=sigmoid_vjp,
        inputs=(_XS,), options={"domains": {0: "logits"}},
        finding="nonfinite", trigger="x > 709",
        variant=lambda: (np.where(_XS > 1.0, 750.0, _XS),),
    ),
    ExploreCase(
        name="log-sigmoid: zero gradient in the 'saturated' branch x < -30",
        fn=log_sigmoid, vjp=log_sigmoid_vjp_saturated, correct_fn=log_sigmoid, correct_vjp=log_sigmoid_vjp,
        inputs=(_XS,), options={"domains": {0: "logits"}},
        finding="gradient", trigger="x < -30",
        variant=lambda: (np.where(_XS < 0.0, _XS - 40.0, _XS),),
    ),
    ExploreCase(
        name="L1 loss: sign as x / np.abs(x)",
        fn=l1, vjp=l1_vjp_ratio, correct_fn=l1, correct_vjp=l1_vjp,
        inputs=(_X_TYPICAL,), options={"domains": {0: "real"}},
        finding="gradient", trigger="x == 0 exactly",
        variant=lambda: (_X_ZEROS,),
    ),
    ExploreCase(
        name="binary cross-entropy: backward ignores np.clip(p, 1e-7, 1 - 1e-7)",
        fn=bce_clip, vjp=bce_clip_vjp_noclip, correct_fn=bce_clip, correct_vjp=bce_clip_vjp,
        inputs=(_P, _YB), options={"wrt": (0,), "domains": {0: "probability", 1: "probability"}},
        finding="gradient", trigger="p < 1e-7 or p > 1 - 1e-7",
        variant=lambda: (_P_EXTREME, _YB),
    ),
    ExploreCase(
        name="cross-entropy on probabilities: backward ignores np.clip(p, 1e-7, 1)",
        fn=nll_clip, vjp=nll_clip_vjp_noclip, correct_fn=nll_clip, correct_vjp=nll_clip_vjp,
        inputs=(_PROWS, _YROWS),
        options={"wrt": (0,), "domains": {0: "probability_rows", 1: ("index", (0, 1))}},
        finding="gradient", trigger="the labelled probability < 1e-7",
        variant=lambda: (_PROWS_EXTREME, _YROWS),
    ),
    ExploreCase(
        name="embedding backward: dW[idx] += v",
        fn=embed, vjp=embed_vjp_fancy, correct_fn=embed, correct_vjp=embed_vjp,
        inputs=(_W_EMB, _IDX), options={"wrt": (0,), "domains": {0: "real", 1: ("index", (0, 0))}},
        finding="gradient", trigger="duplicate indices",
        variant=lambda: (_W_EMB, _IDX_DUP),
    ),
    ExploreCase(
        name="ELU: negative-branch gradient out instead of out + alpha",
        fn=elu, vjp=elu_vjp_noalpha, correct_fn=elu, correct_vjp=elu_vjp,
        inputs=(_X_POS,), options={"domains": {0: "real"}},
        finding="gradient", trigger="negative inputs",
        variant=lambda: (_X_MIXED,),
    ),
    ExploreCase(
        name="leaky ReLU: negative branch 0.01 without the upstream gradient",
        fn=leaky_relu, vjp=leaky_relu_vjp_nov, correct_fn=leaky_relu, correct_vjp=leaky_relu_vjp,
        inputs=(_X_POS,), options={"domains": {0: "real"}},
        finding="gradient", trigger="negative inputs",
        variant=lambda: (_X_MIXED,),
    ),
    ExploreCase(
        name="max-pool 2: backward mask routes v to every tied maximum",
        fn=maxpool2, vjp=maxpool2_vjp_mask, correct_fn=maxpool2, correct_vjp=maxpool2_vjp,
        # directional: full mode judges each tied element against its own interval [0, v],
        # which the doubled gradient satisfies; only a direction through both sees the sum
        inputs=(_XPOOL,), options={"domains": {0: "real"}},
        finding="gradient", trigger="ties within a pooling window",
        variant=lambda: (_XPOOL_TIES,),
    ),
    ExploreCase(
        name="batch norm with the unbiased batch variance (N - 1)",
        fn=batchnorm_unbiased, vjp=batchnorm_unbiased_vjp, correct_fn=batchnorm, correct_vjp=batchnorm_vjp,
        inputs=(_XBN, _GAMMA, _BETA), options={"domains": {0: "real", 1: "real", 2: "real"}},
        finding="nonfinite", trigger="batch size 1",
        variant=lambda: (_XBN[:1].copy(), _GAMMA, _BETA),
    ),
    ExploreCase(
        name="softmax cross-entropy: per-row loop over range(3)",
        fn=softmax_ce_loop3, vjp=softmax_ce_loop3_vjp, correct_fn=softmax_ce_loop, correct_vjp=softmax_ce_loop_vjp,
        inputs=(_X34, _Y3), options={"wrt": (0,), "domains": {0: "real", 1: ("index", (0, 1))}},
        finding="raises", trigger="batch size < 3",
        variant=lambda: (_X34[:2].copy(), _Y3[:2].copy()),
    ),
    ExploreCase(
        name="channels-last flatten: backward reshapes without un-permuting",
        fn=flatten_cl_tanh, vjp=flatten_cl_tanh_vjp_reshape, correct_fn=flatten_cl_tanh, correct_vjp=flatten_cl_tanh_vjp,
        inputs=(_XCL,), options={"domains": {0: "real"}},
        finding="gradient", trigger="more than one channel (C > 1)",
        variant=lambda: (_rng(27).standard_normal((4, 2, 3)),),
    ),
    ExploreCase(
        name="softmax cross-entropy: label loop over range(C - 1)",
        fn=softmax_ce, vjp=softmax_ce_lastclass_vjp, correct_fn=softmax_ce, correct_vjp=softmax_ce_vjp,
        inputs=(_XCE, _YCE), options={"wrt": (0,), "domains": {0: "real", 1: ("index", (0, 1))}},
        finding="gradient", trigger="label == C - 1",
        variant=lambda: (_XCE, np.array([0, 4, 1, 3])),
    ),
    ExploreCase(
        name="l2-normalised rows: projection summed over all rows (singular at a zero row)",
        fn=l2_normalize, vjp=l2_normalize_vjp_allrows, correct_fn=l2_normalize, correct_vjp=l2_normalize_vjp,
        inputs=(_XROW,), options={"domains": {0: "real"}, "allow_nonfinite": True},
        finding="gradient", trigger="more than one row",
        variant=lambda: (_rng(28).standard_normal((3, 6)),),
    ),
)
