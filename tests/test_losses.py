"""Every loss of `loss.terms` against an independent reference: segmentation_models_pytorch
(Dice, focal, Lovász), PyTorch (cross-entropy) or NumPy (OHEM, weighted cross-entropy), in
float32 and from bfloat16 logits; void pixels change nothing; all-void batches give 0."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxseg import losses, steps
from jaxseg.config import load_config
from jaxseg.errors import ConfigError

VOID = 255


def _torch():
    return pytest.importorskip("torch", reason="the torch extra is not installed")


def _smp():
    _torch()
    return pytest.importorskip(
        "segmentation_models_pytorch", reason="segmentation-models-pytorch (torch extra) is absent"
    )


def _random_batch(seed=0, shape=(2, 7, 9), num_classes=6, void_share=0.3):
    """Logits [B, H, W, C] with a wide spread, labels with void pixels and one class absent."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(*shape, num_classes)) * 3).astype(np.float32)
    labels = rng.integers(0, num_classes - 1, size=shape)
    labels[rng.random(shape) < void_share] = VOID
    weights = rng.uniform(0.1, 2.0, num_classes).astype(np.float32)
    return logits, labels, weights


def _value(name, logits, labels, weights=None, **options):
    term = losses.parse_terms([{"name": name, **options}])[0]
    total, weight = term(jnp.asarray(logits), jnp.asarray(labels), weights)
    return total / jnp.maximum(weight, losses.EPS)


def _value_and_grad(name, logits, labels, weights=None, **options):
    value, grad = jax.value_and_grad(lambda x: _value(name, x, labels, weights, **options))(
        jnp.asarray(logits)
    )
    return float(value), np.asarray(grad, np.float32)


def _smp_loss(name, weights, options):
    smp = _smp()
    weights = None if weights is None else [float(w) for w in weights]
    if name == "dice":
        return smp.losses.DiceLoss(
            "multiclass", ignore_index=VOID, class_weights=weights, **options
        )
    if name == "focal":
        return smp.losses.FocalLoss(
            "multiclass", ignore_index=VOID, class_weights=weights, **options
        )
    return smp.losses.LovaszLoss("multiclass", ignore_index=VOID)


def _smp_value_and_grad(name, logits, labels, weights=None, **options):
    torch = _torch()
    x = torch.tensor(logits).permute(0, 3, 1, 2).requires_grad_(True)
    loss = _smp_loss(name, weights, options)(x, torch.tensor(labels).long())
    loss.backward()
    return float(loss), x.grad.permute(0, 2, 3, 1).numpy()


SMP_CASES = [
    ("dice", False, {}),
    ("dice", True, {}),
    ("dice", False, {"smooth": 1.0}),
    ("focal", False, {}),
    ("focal", True, {"gamma": 0.5, "alpha": 0.25}),
    ("focal", False, {"gamma": 0.0}),
    ("lovasz", False, {}),
]


@pytest.mark.parametrize(("name", "weighted", "options"), SMP_CASES)
def test_losses_equal_segmentation_models_pytorch(name, weighted, options):
    logits, labels, weights = _random_batch(seed=len(str(options)) + weighted)
    weights = weights if weighted else None
    ours, our_grad = _value_and_grad(name, logits, labels, weights, **options)
    theirs, their_grad = _smp_value_and_grad(name, logits, labels, weights, **options)
    assert ours == pytest.approx(theirs, rel=1e-5)
    np.testing.assert_allclose(
        our_grad, their_grad, rtol=1e-4, atol=1e-5 * np.abs(their_grad).max()
    )

    # From bfloat16 logits (model.dtype=bfloat16): within bf16 rounding of the float32
    # reference, and equal to the reference on the rounded logits (computed in float32).
    rounded = np.asarray(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32))
    from_bf16 = float(_value(name, jnp.asarray(logits, jnp.bfloat16), labels, weights, **options))
    assert from_bf16 == pytest.approx(theirs, rel=2e-2)
    assert from_bf16 == pytest.approx(
        _smp_value_and_grad(name, rounded, labels, weights, **options)[0], rel=1e-5
    )


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _numpy_cross_entropy(logits, labels, weights, keep=None):
    """sum w[y] (-log p_y) / sum w[y] over valid (and kept) pixels, in float64."""
    valid = labels != VOID
    if keep is not None:
        valid = valid & keep
    probs = _softmax(logits.astype(np.float64)[valid])
    truth = labels[valid]
    nll = -np.log(probs[np.arange(truth.size), truth])
    w = np.ones(truth.size) if weights is None else weights.astype(np.float64)[truth]
    return float((w * nll).sum() / w.sum()) if truth.size else 0.0


def _numpy_ohem(logits, labels, weights, threshold, min_kept):
    """HRNet's OhemCrossEntropy, written out: keep pixels whose true-class probability is
    below max(threshold, the (min_kept + 1)-th lowest one)."""
    valid = labels != VOID
    probs = _softmax(logits.astype(np.float64))
    truth = np.where(valid, labels, 0)
    p_true = np.take_along_axis(probs, truth[..., None], axis=-1)[..., 0]
    ranked = np.sort(p_true[valid])
    if ranked.size == 0:
        return 0.0
    cut = max(ranked[min(min_kept, ranked.size - 1)], threshold)
    return _numpy_cross_entropy(logits, labels, weights, keep=p_true < cut)


@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_cross_entropy_matches_numpy(weighted):
    logits, labels, weights = _random_batch(seed=3)
    weights = weights if weighted else None
    ours = float(_value("ce", logits, labels, weights))
    assert ours == pytest.approx(_numpy_cross_entropy(logits, labels, weights), rel=1e-5)
    bf16 = float(_value("ce", jnp.asarray(logits, jnp.bfloat16), labels, weights))
    assert bf16 == pytest.approx(ours, rel=2e-2)


@pytest.mark.parametrize(
    ("threshold", "min_kept", "weighted"),
    [(0.7, 20, False), (0.7, 20, True), (0.05, 40, False), (0.7, 10_000, True), (1.0, 0, False)],
)
def test_ohem_matches_numpy(threshold, min_kept, weighted):
    logits, labels, weights = _random_batch(seed=4)
    weights = weights if weighted else None
    options = {"threshold": threshold, "min_kept": min_kept}
    ours = float(_value("ohem", logits, labels, weights, **options))
    expected = _numpy_ohem(logits, labels, weights, threshold, min_kept)
    assert ours == pytest.approx(expected, rel=1e-5)
    # A threshold that keeps fewer pixels than min_kept: min_kept decides.
    if threshold == 0.05:
        assert expected != pytest.approx(_numpy_cross_entropy(logits, labels, weights))
    bf16 = float(_value("ohem", jnp.asarray(logits, jnp.bfloat16), labels, weights, **options))
    assert bf16 == pytest.approx(expected, rel=2e-2)


@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_cross_entropy_matches_torch(weighted):
    torch = _torch()
    logits, labels, weights = _random_batch(seed=0, shape=(2, 7, 9), num_classes=26)
    weights = weights if weighted else None
    ours, our_grad = jax.value_and_grad(losses.weighted_cross_entropy)(
        jnp.asarray(logits), jnp.asarray(labels), weights
    )
    loss = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else torch.tensor(weights), ignore_index=VOID
    )
    x = torch.tensor(logits).permute(0, 3, 1, 2).requires_grad_(True)
    expected = loss(x, torch.tensor(labels).long())
    expected.backward()
    assert float(ours) == pytest.approx(float(expected), rel=1e-5)
    # The hand-written backward (softmax minus one-hot in one pass) against torch autograd.
    their_grad = x.grad.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(our_grad, their_grad, rtol=1e-5, atol=1e-7)
    assert np.abs(our_grad[labels == VOID]).max() == 0


def test_void_as_class_matches_torch_with_27_classes():
    torch = _torch()
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 5, 6, 27)).astype(np.float32)
    labels = rng.integers(0, 26, size=(1, 5, 6))
    labels[0, :2] = VOID
    mapped = losses.apply_void_policy(jnp.asarray(labels), "class", 26)
    assert int(mapped[0, 0, 0]) == 26
    ours = float(losses.weighted_cross_entropy(jnp.asarray(logits), mapped))
    expected = torch.nn.CrossEntropyLoss()(
        torch.tensor(logits).permute(0, 3, 1, 2), torch.tensor(np.asarray(mapped)).long()
    )
    assert ours == pytest.approx(float(expected), rel=1e-5)


def test_unknown_void_policy_raises():
    with pytest.raises(ValueError, match="void policy"):
        losses.num_outputs(26, "drop")
    assert losses.num_outputs(26, "ignore") == 26
    assert losses.num_outputs(26, "class") == 27


# Property: pixels that carry no loss (void under data.void=ignore, padding examples under
# either policy) do not reach the loss or its gradient, whatever their logits.
PROPERTY_SHAPE = (2, 3, 4)  # B, H, W; 3 classes (+ void under data.void=class).


@functools.cache
def _compiled_loss(name: str, void: str):
    extra = {"min_kept": 4} if name == "ohem" else {}
    terms = losses.parse_terms([{"name": "ce", "weight": 0.5}, {"name": name, **extra}])
    weights = jnp.linspace(0.5, 2.0, losses.num_outputs(3, void))

    def loss(logits, labels, mask):
        pixel_mask = jnp.broadcast_to(mask[:, None, None], labels.shape)
        return steps.mean_loss(
            steps.loss_terms(
                {"out": logits},
                labels,
                num_classes=3,
                void=void,
                class_weights=weights,
                aux_weight=0.5,
                mask=pixel_mask,
                terms=terms,
            )
        )

    return jax.jit(jax.value_and_grad(loss))


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(losses.LOSSES)),
    void=st.sampled_from(losses.VOID_POLICIES),
    logits=hnp.arrays(np.float32, (*PROPERTY_SHAPE, 4), elements=st.floats(-8, 8, width=32)),
    other=hnp.arrays(np.float32, (*PROPERTY_SHAPE, 4), elements=st.floats(-1e4, 1e4, width=32)),
    labels=hnp.arrays(np.int32, PROPERTY_SHAPE, elements=st.sampled_from([0, 1, 2, VOID])),
    mask=hnp.arrays(np.bool_, PROPERTY_SHAPE[:1]),
)
def test_logits_at_void_pixels_change_neither_loss_nor_gradient(
    name, void, logits, other, labels, mask
):
    no_loss = ~np.broadcast_to(mask[:, None, None], labels.shape)
    if void == "ignore":
        no_loss = no_loss | (labels == VOID)
    outputs = logits[..., : losses.num_outputs(3, void)]
    changed = np.where(no_loss[..., None], other[..., : outputs.shape[-1]], outputs)
    step = _compiled_loss(name, void)
    value, grad = step(jnp.asarray(outputs), jnp.asarray(labels), jnp.asarray(mask))
    changed_value, changed_grad = step(jnp.asarray(changed), jnp.asarray(labels), jnp.asarray(mask))
    assert np.isfinite(float(value))
    assert float(changed_value) == float(value)
    np.testing.assert_array_equal(np.asarray(changed_grad), np.asarray(grad))
    assert not np.asarray(grad)[no_loss].any()


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_all_void_batch_gives_zero_not_nan(name):
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 5)), jnp.float32)
    for void, labels, mask in (
        ("ignore", jnp.full((2, 3, 4), VOID), None),
        ("class", jnp.zeros((2, 3, 4), jnp.int32), jnp.zeros((2, 3, 4), bool)),  # Padding.
    ):
        num_classes = 5 if void == "ignore" else 4

        def loss(x, labels=labels, mask=mask, void=void, num_classes=num_classes):
            terms = steps.loss_terms(
                x,
                labels,
                num_classes=num_classes,
                void=void,
                class_weights=jnp.ones(5),
                aux_weight=0.5,
                mask=mask,
                terms=losses.parse_terms([{"name": name}]),
            )
            return steps.mean_loss(terms)

        value, grad = jax.value_and_grad(loss)(logits)
        assert float(value) == 0.0
        assert np.array_equal(np.asarray(grad), np.zeros(grad.shape))


def test_terms_share_the_cross_entropy_denominator_over_a_split():
    """Summed over batches (as validation does), CE stays exact over the split and Dice is
    averaged per batch, weighted by the batch's (class-weighted) valid pixels."""
    terms = losses.parse_terms([{"name": "ce"}, {"name": "dice", "weight": 0.5}])
    batches = [_random_batch(seed=s, shape=(1, 6, 5)) for s in (5, 6)]
    _, _, weights = batches[0]
    labels_b = [b[1] for b in batches]
    labels_b[1][0, :4] = VOID  # Batches of different valid pixel counts.
    sums = [
        losses.combined_terms(jnp.asarray(x), jnp.asarray(y), terms, jnp.asarray(weights))
        for (x, _, _), y in zip(batches, labels_b, strict=True)
    ]
    split_loss = sum(float(s) for s, _ in sums) / sum(float(w) for _, w in sums)

    logits = np.concatenate([x for x, _, _ in batches])
    labels = np.concatenate(labels_b)
    exact_ce = _numpy_cross_entropy(logits, labels, weights)
    denominators = [float(weights[y[y != VOID]].sum()) for y in labels_b]
    dice = [
        float(_value("dice", x, y, weights)) for (x, _, _), y in zip(batches, labels_b, strict=True)
    ]
    mean_dice = np.dot(dice, denominators) / sum(denominators)
    assert split_loss == pytest.approx(exact_ce + 0.5 * mean_dice, rel=1e-5)


def test_aux_head_adds_the_weighted_terms_of_its_output():
    rng = np.random.default_rng(1)
    out, aux = (jnp.asarray(rng.normal(size=(1, 3, 3, 5)), jnp.float32) for _ in range(2))
    labels = jnp.asarray(rng.integers(0, 5, (1, 3, 3)))
    terms = losses.parse_terms([{"name": "focal", "weight": 2.0}, {"name": "lovasz"}])
    loss = steps.mean_loss(
        steps.loss_terms(
            {"out": out, "aux": aux},
            labels,
            num_classes=5,
            void="ignore",
            class_weights=None,
            aux_weight=0.25,
            terms=terms,
        )
    )

    def terms_of(x):
        return 2.0 * _value("focal", x, labels) + _value("lovasz", x, labels)

    assert float(loss) == pytest.approx(float(terms_of(out) + 0.25 * terms_of(aux)), rel=1e-6)


def test_parse_terms_defaults_and_one_line_errors():
    assert losses.parse_terms([{"name": "focal", "weight": 0.5}]) == (
        losses.Term("focal", 0.5, (("alpha", None), ("gamma", 2.0))),
    )
    assert losses.parse_terms([{"name": "ce"}]) == losses.DEFAULT_TERMS
    focal, ohem = "loss.terms[0] (focal)", "loss.terms[0] (ohem)"
    for entries, message in (
        ([], "loss.terms: expected a non-empty list"),
        ([{"name": "ce"}, {"name": "dise"}], "loss.terms[1]: unknown loss 'dise'; valid: ce, "),
        (["ce"], "loss.terms[0]: expected {'name'"),
        ([{"name": "focal", "gama": 2}], f"{focal}: unknown option 'gama'; valid: weight, gamma"),
        ([{"name": "focal", "alpha": 2}], "alpha must be a number >= 0 and <= 1, or null, got 2"),
        ([{"name": "ohem", "min_kept": 1.5}], f"{ohem}: min_kept must be an integer >= 0, got 1.5"),
        ([{"name": "dice", "weight": -1}], "[0] (dice): weight must be a number >= 0, got -1"),
        ([{"name": "lovasz", "weight": True}], "weight must be a number >= 0, got True"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as error:
            losses.parse_terms(entries)
        assert message in str(error.value) and "\n" not in str(error.value)
    # Checked as the config loads, before any work starts.
    with pytest.raises(ConfigError, match=r"loss.terms\[0\]: unknown loss 'dise'"):
        load_config("unet_dice", overrides=["loss.terms=[{'name': 'dise'}]"])
    assert losses.parse_terms(load_config("unet_dice").loss.terms)[1] == losses.Term(
        "dice", 1.0, (("smooth", 0.0),)
    )


@pytest.mark.slow
def test_train_cli_names_the_bad_term(tmp_path, run_module, assert_one_line_error):
    result = run_module(
        "jaxseg.train",
        "--experiment",
        "unet_dice",
        "--workdir",
        tmp_path / "run",
        "--set",
        "loss.terms=[{'name': 'ce'}, {'name': 'dice', 'smooth': -1}]",
    )
    assert_one_line_error(result, "loss.terms[1] (dice): smooth must be a number >= 0")
    assert not (tmp_path / "run").exists()
