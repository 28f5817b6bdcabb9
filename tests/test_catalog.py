"""Every catalog op verifies on every selected backend, on Hypothesis examples."""

import pytest
from hypothesis import given, settings

from gradverify import InvalidArgument, _runner, catalog


def _examples_per_op():
    """A tenth of the profile's budget: 41 ops x 2 backends, each example a full check with
    the high-precision truth (ci: 10, dev: 3, thorough: 50)."""
    return max(3, settings.default.max_examples // 10)


@pytest.mark.parametrize("name", catalog.names())
def test_op_backward_verifies(name, xp):
    op = catalog.get(name)

    @settings(deadline=None, max_examples=_examples_per_op())
    @given(op.examples())
    def check(example):
        result = _runner.check_op(op, example, xp)
        assert result is None or result.passed, str(result)

    check()


def test_registry_lookup_suggests_close_names():
    with pytest.raises(InvalidArgument, match="did you mean 'softmax'"):
        catalog.get("sofmax")


def test_registry_metadata():
    assert set(catalog.families()) <= set(catalog.FAMILIES)
    for name in catalog.names():
        op = catalog.get(name)
        assert op.name == name and op.summary and op.family in catalog.FAMILIES
    assert catalog.get("relu").kinks and not catalog.get("tanh").kinks
    assert catalog.names("loss") == sorted(n for n in catalog.names() if catalog.get(n).family == "loss")
    with pytest.raises(InvalidArgument, match="family"):
        catalog.names("bogus")
