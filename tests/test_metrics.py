"""The project's metric code against source B0's published figures."""

import numpy as np
import pytest

from regexp.metrics import accuracy, data_loss

Y = np.array([1, 0, 0, 1, 0, 1, 1, 0, 1, 0], dtype=float)
MODEL_A = np.array([0.51, 0.49, 0.3, 0.7, 0.4, 0.6, 0.6, 0.4, 0.6, 0.3])
MODEL_B = np.array([0.9, 0.6, 0.1, 0.9, 0.1, 0.8, 0.9, 0.2, 0.8, 0.1])


def test_b0_model_a_is_more_accurate_but_has_the_higher_loss():
    assert accuracy(Y, MODEL_A) == 1.0
    assert round(data_loss(Y, MODEL_A), 2) == 0.50
    assert accuracy(Y, MODEL_B) == 0.9
    assert round(data_loss(Y, MODEL_B), 2) == 0.22


def test_binary_loss_matches_the_formula_written_out():
    y, p = Y.reshape(-1, 1), MODEL_B.reshape(-1, 1)
    expected = -np.mean(Y * np.log(MODEL_B) + (1 - Y) * np.log(1 - MODEL_B))
    assert data_loss(y, p) == pytest.approx(expected, rel=1e-12)


def test_multiclass_accuracy_and_loss():
    y = np.eye(3)[[0, 1, 2, 2]]
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    assert accuracy(y, p) == 0.75
    expected = -np.mean(np.log([0.7, 0.8, 0.4, 0.25]))
    assert data_loss(y, p) == pytest.approx(expected, rel=1e-12)
