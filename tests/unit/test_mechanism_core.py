"""Memory (Thm 1), weights, Plackett-Luce sampling and the AMM price."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.config import WeightForm
from fpamm_opt.mechanism.memory import shortfall_ratio, update_memory
from fpamm_opt.mechanism.price import amm_price
from fpamm_opt.mechanism.priority import plackett_luce
from fpamm_opt.mechanism.weights import coupled_memory, fairness_weights, tier_normalisers

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=100, deadline=None)
unit_floats = st.floats(0.0, 1.0, allow_nan=False)
betas = st.floats(1e-6, 1.0, allow_nan=False).filter(lambda b: 0 < b <= 1)


def vec(n: int, lo: float = 0.0, hi: float = 1.0) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, n, elements=st.floats(lo, hi, allow_nan=False))


# ------------------------------------------------------------------- memory
def test_shortfall_ratio_basic() -> None:
    u = shortfall_ratio(np.array([5.0, 0.0, 0.0, 12.0]), np.array([10.0, 3.0, 0.0, 10.0]))
    np.testing.assert_allclose(u, [0.5, 1.0, 0.0, 0.0])


@SETTINGS
@given(data=st.data(), n=st.integers(1, 12), beta=betas)
def test_memory_stays_in_unit_box(data: st.DataObject, n: int, beta: float) -> None:
    s = data.draw(vec(n))
    u = data.draw(vec(n))
    s1 = update_memory(s, u, beta)
    assert np.all((s1 >= 0) & (s1 <= 1))


@SETTINGS
@given(data=st.data(), n=st.integers(1, 12), beta=betas)
def test_memory_update_contracts(data: st.DataObject, n: int, beta: float) -> None:
    s = data.draw(vec(n))
    s2 = data.draw(vec(n))
    u = data.draw(vec(n, -0.5, 1.5))  # saturation active too: still 1-Lipschitz
    lhs = np.max(np.abs(update_memory(s, u, beta) - update_memory(s2, u, beta)))
    assert lhs <= (1 - beta) * np.max(np.abs(s - s2)) + 1e-12


@SETTINGS
@given(data=st.data(), n=st.integers(1, 12), beta=betas, gamma=st.floats(0, 1))
def test_coupled_memory_in_box_and_gamma_one_is_update(
    data: st.DataObject, n: int, beta: float, gamma: float
) -> None:
    s = data.draw(vec(n))
    u = data.draw(vec(n))
    sg = coupled_memory(s, u, beta, gamma)
    assert np.all((sg >= 0) & (sg <= 1))
    np.testing.assert_allclose(coupled_memory(s, u, beta, 1.0), update_memory(s, u, beta))


# ------------------------------------------------------------------ weights
def test_tier_normalisers_and_relative_weights_by_hand() -> None:
    s = np.array([0.0, 0.1, 0.2, 0.001, 0.0])
    tier = np.array([0, 0, 0, 1, 1])
    m = tier_normalisers(s, tier, 3, 0.01)
    np.testing.assert_allclose(m, [0.2, 0.01, 0.01])
    w = fairness_weights(s, tier, m, 0.05, WeightForm.RELATIVE)
    phi = np.array([1.0, 0.5, 0.0, 0.9, 1.0])
    np.testing.assert_allclose(w, 1 / (0.05 + phi))
    np.testing.assert_allclose(fairness_weights(s, tier, m, 0.05, "raw"), 1 / (1.05 - s))
    np.testing.assert_array_equal(fairness_weights(s, tier, m, 0.05, WeightForm.EQUAL), 1.0)


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(2, 10),
    k=st.integers(1, 3),
    eps=st.floats(1e-3, 1.0),
    form=st.sampled_from(list(WeightForm)),
)
def test_weights_weakly_increase_with_memory_within_tier(
    data: st.DataObject, n: int, k: int, eps: float, form: WeightForm
) -> None:
    s = data.draw(vec(n))
    tier = data.draw(arrays(np.int64, n, elements=st.integers(0, k - 1)))
    m = tier_normalisers(s, tier, k, 0.01)
    w = fairness_weights(s, tier, m, eps, form)
    assert np.all(w > 0) and np.all(w <= 1 / eps * (1 + 1e-12))
    for a in range(n):
        for b in range(n):
            if tier[a] == tier[b] and s[a] <= s[b]:
                assert w[a] <= w[b] * (1 + 1e-12)
    # Raising one node's memory (normaliser recomputed) never lowers its own weight.
    i = data.draw(st.integers(0, n - 1))
    s_up = s.copy()
    s_up[i] = data.draw(st.floats(float(s[i]), 1.0))
    w_up = fairness_weights(s_up, tier, tier_normalisers(s_up, tier, k, 0.01), eps, form)
    assert w_up[i] >= w[i] * (1 - 1e-12)


# ------------------------------------------------------------ Plackett-Luce
def test_plackett_luce_is_a_permutation_and_consumes_fixed_draws() -> None:
    rng_a = np.random.default_rng(5)
    rng_b = np.random.default_rng(5)
    for _ in range(20):
        order = plackett_luce(rng_a, np.array([0.7, 0.2, 0.1]))
        assert sorted(order.tolist()) == [0, 1, 2]
        plackett_luce(rng_b, np.array([1.0, 50.0, 3.0]))  # other priorities, same K
    assert rng_a.random() == rng_b.random()


def test_plackett_luce_frequencies_match_pi() -> None:
    rng = np.random.default_rng(12345)
    pi = np.array([0.5, 0.3, 0.2])
    n = 20000
    first = np.zeros(3)
    pairs: dict[tuple[int, int], int] = {}
    for _ in range(n):
        o = plackett_luce(rng, pi)
        first[o[0]] += 1
        pairs[(int(o[0]), int(o[1]))] = pairs.get((int(o[0]), int(o[1])), 0) + 1
    np.testing.assert_allclose(first / n, pi, atol=0.015)
    # Second place given first: pi_j / (1 - pi_i).
    p01 = pi[0] * pi[1] / (1 - pi[0])
    assert abs(pairs[(0, 1)] / n - p01) < 0.015


def test_plackett_luce_rejects_bad_priorities() -> None:
    rng = np.random.default_rng(0)
    for bad in ([0.5, 0.0], [1.0, np.nan], []):
        with pytest.raises(InputError):
            plackett_luce(rng, np.array(bad))


def test_plackett_luce_deterministic_given_seed() -> None:
    a = [plackett_luce(np.random.default_rng(3), np.ones(4)).tolist() for _ in range(3)]
    assert a[0] == a[1] == a[2]


# ------------------------------------------------------------------- price
@SETTINGS
@given(s=st.floats(-10, 1e4), d=st.floats(0, 1e4), cap=st.floats(0, 1e4))
def test_amm_price_bounds(s: float, d: float, cap: float) -> None:
    p = amm_price(s, d, cap)
    assert 0.0 <= p <= cap
    if d > 0 and s >= d:
        assert p == 0.0


def test_amm_price_values() -> None:
    assert amm_price(75.0, 100.0, 1000.0) == pytest.approx(250.0)
    assert amm_price(0.0, 100.0, 1000.0) == pytest.approx(1000.0)
    assert amm_price(5.0, 0.0, 1000.0) == 0.0
