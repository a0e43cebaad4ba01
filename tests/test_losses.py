"""A fault's loss excuses only what follows from it: its grant, after it, no stale token."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conformance import Anomaly, AnomalyKind, Severity
from conformance._losses import CONSEQUENCES, Loss, excused_by, unavoidable
from simulator import FaultKind

FAMILIES = st.sampled_from(["fam-1", "fam-2"])
losses = st.builds(
    Loss,
    step=st.integers(0, 40),
    agent=st.sampled_from(["atlas", "nova"]),
    fault=st.sampled_from([FaultKind.DROP, FaultKind.KILL, FaultKind.CRASH]),
    family=FAMILIES,
    spent=st.integers(0, 4),
)
anomalies = st.builds(
    Anomaly,
    kind=st.sampled_from(list(AnomalyKind)),
    severity=st.just(Severity.FATAL),
    agent=st.sampled_from(["atlas", "nova"]),
    steps=st.lists(st.integers(0, 40), min_size=1, max_size=2).map(tuple),
    message=st.just("m"),
    family=FAMILIES,
    generation=st.none() | st.integers(0, 5),
)


@given(anomalies, st.lists(losses, max_size=3))
def test_a_loss_excuses_only_its_own_consequences(anomaly: Anomaly, lost: list[Loss]) -> None:
    loss = excused_by(anomaly, lost)
    judged = unavoidable(anomaly, lost)
    if loss is None:
        assert judged == anomaly
        return
    assert judged.severity is Severity.WARNING
    assert f"step {loss.step}" in judged.message
    assert anomaly.kind in CONSEQUENCES
    assert loss.family == anomaly.family  # per grant
    if anomaly.kind is AnomalyKind.TOKEN_LOST:
        assert anomaly.generation == loss.spent + 1  # exactly the lost token
    else:
        assert loss.step <= max(anomaly.steps)  # nothing before the loss
        # no stale token: an older one than the lost request spent is the engine's own bug
        assert anomaly.generation is None or anomaly.generation >= loss.spent


@given(anomalies, losses)
def test_a_consequence_in_the_grant_after_the_loss_is_excused(anomaly: Anomaly, loss: Loss) -> None:
    """The converse: what does follow from the loss is excused (no fatal blame)."""
    follows = (
        anomaly.kind in CONSEQUENCES
        and anomaly.family == loss.family
        and (
            anomaly.generation == loss.spent + 1
            if anomaly.kind is AnomalyKind.TOKEN_LOST
            else loss.step <= max(anomaly.steps)
            and (anomaly.generation is None or anomaly.generation >= loss.spent)
        )
    )
    assert (excused_by(anomaly, [loss]) is not None) == follows
