"""The network: affine - ReLU - affine - softmax loss, and a plain SGD step."""

import numpy as np

from two_layer_net.layers import affine_backward, affine_forward, relu_backward, relu_forward, softmax_loss

PARAMS = ("W1", "b1", "W2", "b2")


def init_params(xp, input_dim, hidden_dim, num_classes, *, weight_scale=0.5, seed=0):
    """Small random weights and zero biases, as arrays of ``xp``."""
    rng = np.random.default_rng(seed)
    return {
        "W1": xp.asarray(weight_scale * rng.standard_normal((input_dim, hidden_dim))),
        "b1": xp.zeros(hidden_dim, dtype=xp.float64),
        "W2": xp.asarray(weight_scale * rng.standard_normal((hidden_dim, num_classes))),
        "b2": xp.zeros(num_classes, dtype=xp.float64),
    }


def loss(params, x, y):
    """The mean softmax loss of the network on the batch ``(x, y)``, and its gradients."""
    hidden, affine1 = affine_forward(x, params["W1"], params["b1"])
    activated, relu = relu_forward(hidden)
    scores, affine2 = affine_forward(activated, params["W2"], params["b2"])
    value, dscores = softmax_loss(scores, y)
    dactivated, dW2, db2 = affine_backward(dscores, affine2)
    dhidden = relu_backward(dactivated, relu)
    _, dW1, db1 = affine_backward(dhidden, affine1)
    return value, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def sgd_step(params, grads, lr):
    """One step of gradient descent: ``p - lr * dp`` for every parameter (new arrays)."""
    return {name: params[name] - lr * grads[name] for name in params}


def train(params, x, y, *, lr=0.5, steps=50):
    """Full-batch gradient descent; returns the parameters and the loss after each step."""
    history = []
    for _ in range(steps):
        value, grads = loss(params, x, y)
        params = sgd_step(params, grads, lr)
        history.append(float(value))
    return params, history
