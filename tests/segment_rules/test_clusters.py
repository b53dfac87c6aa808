"""Cluster suggestions: k is chosen by its stated criterion, known groups are recovered and described, and the
candidate rule files load and report their own precision and recall truthfully."""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # ships no type information

from segment_rules.clusters import ClusterSuggester, KScore, suggest_rule_files
from segment_rules.fields import FieldType, lookup
from segment_rules.language import All, Compare, Node, Op
from segment_rules.ruleset import load_rules

FEATURES = ["recency_days", "orders", "monetary", "aov", "email_opens_90d", "sessions_90d"]
GROUPS = ("loyal", "one_time", "engaged_non_buyer")
SIZES = (120, 160, 80)
K_MAX = 5


def fast(**params: Any) -> ClusterSuggester:
    """Fewer restarts and k values than the defaults keep each fit quick; the data are well separated."""
    return ClusterSuggester(n_init=2, k_max=K_MAX, **params)


def people(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` people of one kind, in the FEATURES columns; non-buyers have no recency and no order value."""
    if kind == "loyal":  # frequent, high order value, recent
        orders = rng.poisson(8, n) + 3.0
        aov = rng.lognormal(np.log(120), 0.3, n)
        recency = rng.uniform(1, 30, n)
        opens, sessions = rng.poisson(3, n), rng.poisson(4, n)
    elif kind == "one_time":  # one order, long ago, little else
        orders = np.ones(n)
        aov = rng.lognormal(np.log(40), 0.3, n)
        recency = rng.uniform(300, 700, n)
        opens, sessions = rng.poisson(0.3, n), rng.poisson(0.3, n)
    else:  # open emails and browse, never ordered
        orders = np.zeros(n)
        aov = np.full(n, np.nan)
        recency = np.full(n, np.nan)
        opens, sessions = rng.poisson(10, n) + 3, rng.poisson(6, n) + 2
    monetary = np.where(orders > 0, orders * np.nan_to_num(aov), 0.0)
    return np.column_stack([recency, orders, monetary, aov, opens, sessions]).astype(float)


def population(sizes: tuple[int, ...] = SIZES, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """The three kinds in blocks, and the true group of each row."""
    rng = np.random.default_rng(seed)
    X = np.vstack([people(kind, n, rng) for kind, n in zip(GROUPS, sizes, strict=True)])
    return X, np.repeat(np.arange(len(sizes)), sizes)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """k-means on a few hundred rows: OpenMP threads cost more than they save, most of all on shared CI cores."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return population()


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> ClusterSuggester:
    X, _ = data
    return fast(random_state=3).fit(X, FEATURES)


def cluster_of_group(suggester: ClusterSuggester, truth: np.ndarray) -> dict[str, int]:
    """The cluster most members of each true group landed in."""
    return {name: int(np.bincount(suggester.labels_[truth == g]).argmax()) for g, name in enumerate(GROUPS)}


def words(profile: str) -> set[str]:
    return set(profile.split(", "))


# ----------------------------------------------------------------------------------------------- k and groups


def test_chooses_the_true_number_of_groups_and_recovers_them(
    fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray]
) -> None:
    _, truth = data
    assert fitted.k_ == 3
    assert adjusted_rand_score(truth, fitted.labels_) > 0.9
    assert [s.k for s in fitted.scores_] == list(range(2, K_MAX + 1))
    assert "k=3" in fitted.selection_


def test_profiles_describe_the_groups_in_words(fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray]) -> None:
    _, truth = data
    where = cluster_of_group(fitted, truth)
    assert sorted(where.values()) == [0, 1, 2]
    loyal = words(fitted.profiles_[where["loyal"]])
    one_time = words(fitted.profiles_[where["one_time"]])
    non_buyer = words(fitted.profiles_[where["engaged_non_buyer"]])
    assert {"frequent", "high order value", "recent"} <= loyal
    assert {"one-time buyers", "lapsed"} <= one_time
    assert {"never ordered", "engaged with email"} <= non_buyer
    # A cluster without orders has no recency or order value to speak of.
    assert not non_buyer & {"recent", "lapsed", "high order value", "low order value", "low spend"}


def test_recency_words_hold_when_one_cluster_is_most_of_the_buyers() -> None:
    # Most buyers are one-time buyers from long ago, so the population's median recency lies inside their
    # cluster: they are still "lapsed" (no order in over a year), not merely close to the median.
    X, truth = population(sizes=(40, 240, 80), seed=5)
    suggester = fast().fit(X, FEATURES)
    where = cluster_of_group(suggester, truth)
    assert "lapsed" in words(suggester.profiles_[where["one_time"]])
    assert "recent" in words(suggester.profiles_[where["loyal"]])


def test_centres_are_member_medians_in_original_units(
    fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, truth = data
    where = cluster_of_group(fitted, truth)
    loyal = fitted.centers_[where["loyal"]]
    orders, recency = FEATURES.index("orders"), FEATURES.index("recency_days")
    assert loyal[orders] == np.median(X[fitted.labels_ == where["loyal"], orders])
    assert 1 <= loyal[recency] <= 30
    non_buyer = fitted.centers_[where["engaged_non_buyer"]]
    assert non_buyer[orders] == 0
    assert math.isnan(non_buyer[recency])  # nobody in it has a recency: the fill value is not a median


def test_davies_bouldin_criterion_finds_the_groups_too(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, truth = data
    suggester = fast(criterion="davies_bouldin").fit(X, FEATURES)
    assert suggester.k_ == 3
    assert adjusted_rand_score(truth, suggester.labels_) > 0.9


def test_ties_go_to_the_smaller_k(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    # Every silhouette is within 2 of any other, so all eligible k tie: the smallest wins.
    suggester = fast(tie_tolerance=2.0).fit(X, FEATURES)
    assert suggester.k_ == min(s.k for s in suggester.scores_ if s.eligible)
    assert suggester.k_ == 2


def test_clusters_are_numbered_by_size(fitted: ClusterSuggester) -> None:
    assert list(fitted.sizes_) == sorted(fitted.sizes_, reverse=True)
    assert fitted.sizes_.sum() == fitted.n_people_
    assert np.array_equal(fitted.sizes_, np.bincount(fitted.labels_))


# ----------------------------------------------------------------------------------------------- determinism


def test_the_same_random_state_gives_the_same_result(
    fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    again = fast(random_state=3).fit(X, FEATURES)
    assert np.array_equal(again.labels_, fitted.labels_)
    assert np.array_equal(again.cluster_centers_, fitted.cluster_centers_)
    assert again.scores_ == fitted.scores_
    assert (again.profiles_, again.rules_) == (fitted.profiles_, fitted.rules_)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_change_the_partition(
    fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    X, _ = data
    reference = fitted
    order = np.random.default_rng(seed).permutation(len(X))
    shuffled = fast(random_state=3).fit(X[order], FEATURES)
    assert shuffled.k_ == reference.k_
    assert adjusted_rand_score(reference.labels_[order], shuffled.labels_) == 1.0
    # Numbering by size makes even the cluster numbers independent of the row order.
    assert np.array_equal(reference.labels_[order], shuffled.labels_)


def test_predict_on_the_training_rows_agrees_with_labels(
    fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, truth = data
    assert np.array_equal(fitted.predict(X), fitted.labels_)
    # New people go to the cluster of their kind, missing values included.
    newcomers = np.vstack([people(kind, 5, np.random.default_rng(99)) for kind in GROUPS])
    where = cluster_of_group(fitted, truth)
    assert list(fitted.predict(newcomers)) == [where[kind] for kind in GROUPS for _ in range(5)]


def test_a_sampled_fit_still_assigns_everyone(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, truth = data
    suggester = fast(max_sample=150, silhouette_sample=100).fit(X, FEATURES)
    assert suggester.n_sample_ == 150
    assert len(suggester.labels_) == suggester.n_people_ == len(X)
    assert np.array_equal(suggester.predict(X), suggester.labels_)
    assert adjusted_rand_score(truth, suggester.labels_) > 0.9


# ----------------------------------------------------------------------------------------------- min size


def with_a_small_group() -> np.ndarray:
    """Two large groups and a distinct group of 3 % of the people."""
    X, _ = population(sizes=(12, 200, 188), seed=11)
    return X


def chosen_by_the_criterion(scores: tuple[KScore, ...], share: float, tolerance: float) -> int | None:
    """The documented rule, restated: among k with every cluster >= share, the smallest k within tolerance of
    the best silhouette; None when no k qualifies."""
    eligible = [s for s in scores if s.smallest_share >= share]
    if not eligible:
        return None
    best = max(s.silhouette for s in eligible)
    return min(s.k for s in eligible if s.silhouette >= best - tolerance)


@pytest.fixture(scope="module")
def unconstrained() -> ClusterSuggester:
    return fast(min_cluster_share=0.0).fit(with_a_small_group(), FEATURES)


def test_a_small_cluster_rules_its_k_out(unconstrained: ClusterSuggester) -> None:
    X = with_a_small_group()
    free = unconstrained
    assert free.k_ == 3  # without the constraint, the small group is a cluster of its own
    assert free.shares_.min() == pytest.approx(0.03)
    constrained = fast(min_cluster_share=0.05).fit(X, FEATURES)
    assert constrained.shares_.min() >= 0.05
    assert constrained.k_ != 3
    assert next(s for s in constrained.scores_ if s.k == 3).eligible is False


@settings(max_examples=4, deadline=None)
@given(share=st.floats(0.0, 0.6))
@example(share=0.04)  # rules out k >= 3, which keep the 3 % group apart
@example(share=0.5)  # no k qualifies: even k=2 has a cluster below half the people
def test_min_cluster_share_is_honoured(unconstrained: ClusterSuggester, share: float) -> None:
    X = with_a_small_group()
    # Eligibility does not change the clustering of each k: the unconstrained table has every k's smallest share.
    table = unconstrained.scores_
    expected = chosen_by_the_criterion(table, share, tolerance=0.01)
    suggester = fast(min_cluster_share=share)
    if expected is None:
        with pytest.raises(ValueError, match="min_cluster_share"):
            suggester.fit(X, FEATURES)
        with pytest.raises(NotFittedError):  # a failed fit leaves no half-fitted model behind
            suggester.predict(X)
        return
    suggester.fit(X, FEATURES)
    assert suggester.k_ == expected
    assert suggester.shares_.min() >= share
    assert [s.eligible for s in suggester.scores_] == [s.smallest_share >= share for s in table]


# ----------------------------------------------------------------------------------------------- rule files


def evaluate(node: Node, X: np.ndarray, names: list[str]) -> np.ndarray:
    """Who matches an ``all`` of gte/lt comparisons; as in the rule language, a missing value fails any comparison."""
    if isinstance(node, Compare):
        values = X[:, names.index(node.field)]
        if node.op is Op.GTE:
            return np.asarray(values >= node.value)
        assert node.op is Op.LT, node
        return np.asarray(values < node.value)
    assert isinstance(node, All), node
    mask = np.ones(len(X), dtype=bool)
    for item in node.items:
        mask &= evaluate(item, X, names)
    return mask


def reported(text: str, measure: str) -> float:
    match = re.search(rf"^#\s+{measure} (\d\.\d{{3}}) ", text, flags=re.MULTILINE)
    assert match, f"no {measure} comment in:\n{text}"
    return float(match[1])


def test_written_rules_load_and_report_their_precision_and_recall(
    fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, _ = data
    paths = suggest_rule_files(fitted, tmp_path / "suggestions")
    assert [p.name for p in paths] == [f"suggested-{c}.yaml" for c in range(fitted.k_)]
    rules = load_rules(tmp_path / "suggestions")
    assert sorted(rules.names) == [f"suggested-{c}" for c in range(fitted.k_)]
    for cluster, path in enumerate(paths):
        segment = rules.segment(f"suggested-{cluster}")
        assert segment.destinations == ()  # a suggestion is pushed nowhere
        assert fitted.profiles_[cluster] in segment.description
        assert f"{fitted.sizes_[cluster]:,} people" in segment.description
        matched = evaluate(segment.rule, X, FEATURES)
        members = fitted.labels_ == cluster
        precision = (matched & members).sum() / matched.sum()
        recall = (matched & members).sum() / members.sum()
        text = path.read_text(encoding="utf-8")
        assert reported(text, "precision") == round(precision, 3)
        assert reported(text, "recall") == round(recall, 3)
        # The groups are well separated, so a shallow rule captures each cluster almost exactly.
        assert precision > 0.9 and recall > 0.9, (path.name, precision, recall)


def test_rules_on_features_non_buyers_lack_report_the_rule_languages_result(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """Non-buyers have no recency and no order value, and a comparison with a missing value is false: the
    reported precision and recall must be those of the rule as the rule language evaluates it."""
    X, _ = data
    names = ["recency_days", "aov"]
    columns = X[:, [FEATURES.index(n) for n in names]]
    suggester = fast().fit(columns, names)
    paths = suggest_rule_files(suggester, tmp_path)
    rules = load_rules(tmp_path)
    never_ordered = np.isnan(columns[:, 0])
    for cluster, path in enumerate(paths):
        matched = evaluate(rules.segment(f"suggested-{cluster}").rule, columns, names)
        members = suggester.labels_ == cluster
        hits = (matched & members).sum()
        text = path.read_text(encoding="utf-8")
        assert reported(text, "precision") == round(hits / matched.sum(), 3)
        assert reported(text, "recall") == round(hits / members.sum(), 3)
        if np.array_equal(members, never_ordered):
            # No threshold on these features can match them: the honest rule is everyone, at the cluster's share.
            assert matched.all()
            assert "matches everyone" in text


def test_thresholds_are_readable(fitted: ClusterSuggester) -> None:
    conditions = [c for rule in fitted.rules_ for c in rule.conditions]
    assert conditions
    for condition in conditions:
        value = condition.value
        spec = lookup(condition.field)
        assert spec is not None
        if spec.type is FieldType.INTEGER:  # whole thresholds on counts
            assert value == int(value), condition
        elif value != 0:  # two significant figures
            assert round(value, 1 - math.floor(math.log10(abs(value)))) == value, condition


def test_missing_values_are_filled_as_documented(fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    fill = dict(zip(fitted.feature_names_in_, fitted.fill_, strict=True))
    assert fill["recency_days"] == np.nanmax(X[:, FEATURES.index("recency_days")])  # never ordered: as lapsed as anyone
    assert fill["aov"] == 0


def test_existing_files_are_not_overwritten_unless_asked(fitted: ClusterSuggester, tmp_path: Path) -> None:
    first = suggest_rule_files(fitted, tmp_path, prefix="clusters")
    (tmp_path / "clusters-1.yaml").write_text("# edited by hand\n", encoding="utf-8")
    before = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match=r"clusters-0\.yaml.*overwrite=True"):
        suggest_rule_files(fitted, tmp_path, prefix="clusters")
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()} == before
    assert suggest_rule_files(fitted, tmp_path, prefix="clusters", overwrite=True) == first
    assert (tmp_path / "clusters-1.yaml").read_text(encoding="utf-8") != "# edited by hand\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in first)  # nothing half-written left


def test_a_prefix_must_make_segment_names(fitted: ClusterSuggester, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prefix"):
        suggest_rule_files(fitted, tmp_path, prefix="Suggested Segments")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- contract


def learned(estimator: ClusterSuggester) -> list[str]:
    return [name for name in vars(estimator) if name.endswith("_") and not name.startswith("__")]


def test_init_only_stores_parameters_and_clone_copies_them() -> None:
    suggester = ClusterSuggester(k_min=3, k_max=5, min_cluster_share=0.1, criterion="davies_bouldin", random_state=9)
    assert set(vars(suggester)) == set(suggester.get_params())
    assert learned(suggester) == []
    copy = clone(suggester)
    assert copy.get_params() == suggester.get_params()
    assert ClusterSuggester().set_params(**suggester.get_params()).get_params() == suggester.get_params()


def test_fit_returns_self_and_sets_only_trailing_underscore_attributes(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    suggester = fast()
    params = suggester.get_params()
    assert suggester.fit(X, FEATURES) is suggester
    assert all(name.endswith("_") for name in set(vars(suggester)) - set(params))
    assert suggester.get_params() == params
    # The model keeps labels, not the data: it stays small.
    assert len(pickle.dumps(suggester)) < 10_000 + 8 * len(X)


def test_unfitted_use_raises_not_fitted(fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray],
                                        tmp_path: Path) -> None:
    X, _ = data
    copy = clone(fitted)
    for use in (lambda: copy.predict(X), copy.to_dict, lambda: suggest_rule_files(copy, tmp_path)):
        with pytest.raises(NotFittedError):
            use()
    assert list(tmp_path.iterdir()) == []


def test_json_round_trip_gives_identical_predictions_and_files(
    fitted: ClusterSuggester, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, _ = data
    stored = json.loads(json.dumps(fitted.to_dict(), allow_nan=False))
    assert stored["model"] == "ClusterSuggester"
    assert stored["format_version"] == 1
    assert stored["library_version"]
    assert "labels" not in stored
    loaded = ClusterSuggester.from_dict(stored)
    assert loaded.get_params() == fitted.get_params()
    assert np.array_equal(loaded.predict(X), fitted.predict(X))
    assert (loaded.profiles_, loaded.rules_, loaded.scores_) == (fitted.profiles_, fitted.rules_, fitted.scores_)
    np.testing.assert_array_equal(loaded.centers_, fitted.centers_)
    one = suggest_rule_files(fitted, tmp_path / "a")
    two = suggest_rule_files(loaded, tmp_path / "b")
    assert [p.read_text(encoding="utf-8") for p in one] == [p.read_text(encoding="utf-8") for p in two]


def test_from_dict_rejects_other_models_and_newer_layouts(fitted: ClusterSuggester) -> None:
    stored = fitted.to_dict()
    with pytest.raises(ValueError, match="not a"):
        ClusterSuggester.from_dict({**stored, "model": "RFMScorer"})
    with pytest.raises(ValueError, match="format_version"):
        ClusterSuggester.from_dict({**stored, "format_version": 99})


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["recency_days", "orders", "monetary", "aov", "email_opens_90d", "nonsense"], "not a field"),
        (["recency_days", "orders", "monetary", "aov", "email_opens_90d", "country"], "not a number"),
        (["recency_days", "orders", "monetary", "aov", "email_opens_90d", "properties.gender"], "protected"),
        (["recency_days", "orders", "monetary", "aov", "email_opens_90d", "orders"], "unique"),
        (["recency_days", "orders", "monetary"], "shape"),
    ],
)
def test_fit_rejects_features_rules_cannot_use(
    data: tuple[np.ndarray, np.ndarray], names: list[str], message: str
) -> None:
    X, _ = data
    with pytest.raises(ValueError, match=message):
        fast().fit(X, names)


def test_fit_rejects_a_feature_without_values(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    empty = X.copy()
    empty[:, FEATURES.index("aov")] = np.nan
    with pytest.raises(ValueError, match="'aov' has no values"):
        fast().fit(empty, FEATURES)
