"""The whole network: its gradient, an SGD step, and a short training run."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gradverify.strategies import hyperparameters, make_strategies
from two_layer_net.model import PARAMS, init_params, loss, sgd_step, train


def network_loss(W1, b1, W2, b2, x, y):
    return loss({"W1": W1, "b1": b1, "W2": W2, "b2": b2}, x, y)[0]


def network_gradient(W1, b1, W2, b2, x, y):
    grads = loss({"W1": W1, "b1": b1, "W2": W2, "b2": b2}, x, y)[1]
    return (*(grads[name] for name in PARAMS), None, None)  # nothing for the data


# The whole model on a few fixed random instances, as a course's gradient check does: a
# batch of one, and a batch of four (a batch of one hides a missing division by N).
@pytest.mark.parametrize("batch", [1, 4])
def test_network_gradient(xp, gradcheck, batch):
    rng = np.random.default_rng(batch)
    params = init_params(xp, 3, 5, 3, seed=batch)
    params["b1"], params["b2"] = xp.asarray(0.1 * rng.standard_normal(5)), xp.asarray(0.1 * rng.standard_normal(3))
    x, y = xp.asarray(rng.standard_normal((batch, 3))), xp.asarray(rng.integers(0, 3, size=batch))
    # x and y are inputs too (not differentiated), so that the high-precision truth sees
    # them as host arrays on every backend.
    gradcheck.grad(network_loss, network_gradient, *(params[k] for k in PARAMS), x, y, wrt=(0, 1, 2, 3), name="two_layer_net.loss")


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_sgd_step_moves_each_parameter_against_its_gradient(xp, data):
    s = make_strategies(xp)
    lr = data.draw(hyperparameters("sgd"))["lr"]
    params = {name: data.draw(s.arrays((2, 3))) for name in PARAMS}
    grads = {name: data.draw(s.arrays((2, 3))) for name in PARAMS}
    new = sgd_step(params, grads, lr)
    for name in PARAMS:
        assert bool(xp.all(new[name] == params[name] - lr * grads[name])), name


def test_training_reduces_the_loss(xp):
    # Four points in the plane, two classes (XOR): a linear model cannot fit them.
    x = xp.asarray([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    y = xp.asarray([0, 0, 1, 1])
    params = init_params(xp, 2, 8, 2, seed=1)
    _, history = train(params, x, y, lr=0.5, steps=200)
    assert math.isfinite(history[-1]) and history[-1] < 0.25 * history[0], history[::20]
