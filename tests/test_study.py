"""The training study (gradverify.study): determinism, the end-to-end and replay checks (and
that they catch a broken backward pass and a wrong update), the curves, the comparisons
where their claim is robust, where training stalls, the record, the CLI and the page at 1400 px."""

import copy
import doctest
import json
import math

import numpy as np
import pytest

import gradverify
from gradverify import _record, critical, study
from gradverify.__main__ import main, study_lines
from gradverify._record import new_run
from gradverify.report import render_html
from tests.test_report import _assert_fits, _measure, _screenshot, needs_chromium

SMALL = study.SIZES["small"]
VERDICTS = {"local minimum", "local maximum", "saddle", "degenerate", "not critical", "nonfinite"}


@pytest.fixture(scope="module")
def small():
    return study.run_study(seed=0, size="small")


def _without_times(obj):
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def _broken_backward(net):
    """The network's backward pass with the second layer's weight gradient of the wrong sign."""

    def backward(cache):
        g = net.backward(cache)
        d, h, c = net.d, net.h, net.c
        start = d * h + h
        g[start : start + h * c] *= -1.0
        return g

    return backward


def _wrong_momentum(param, grad, state, *, lr, momentum=0.9, xp=None):
    """Heavy-ball momentum with the velocity added with the wrong sign."""
    v = momentum * state["velocity"] - lr * grad
    return param - v, {"velocity": v}


# -- determinism and the record ---------------------------------------------------------------


def test_public_names_and_doctests():
    assert study.__all__ == sorted(study.__all__, key=str) and all(hasattr(study, n) for n in study.__all__)
    outcome = doctest.testmod(study, report=False)
    assert outcome.failed == 0 and outcome.attempted >= 2


def test_the_study_is_deterministic_for_a_seed_and_json_safe(small):
    again = study.run_study(seed=0, size="small")
    assert _record.to_json(_without_times(again)) == _record.to_json(_without_times(small))
    other = study.run_study(seed=1, size="small", stall=False)
    assert other["stall"] is None
    assert other["optimizers"]["sgd"]["curves"]["loss"] != small["optimizers"]["sgd"]["curves"]["loss"]
    assert json.loads(_record.to_json(small))["schema"] == study.SCHEMA


def test_bad_arguments_are_refused():
    for kwargs in ({"size": "huge"}, {"seed": -1}, {"seed": 1.5}, {"seed": True}):
        with pytest.raises(gradverify.InvalidArgument):
            study.run_study(**kwargs)


def test_a_passing_study_passes_and_records_which_ops_it_rests_on(small):
    assert small["passed"] is True and small["problems"] == []
    assert [op["name"] for op in small["ops"]] == list(study.OPS_USED)
    assert all(op["verified"] is None for op in small["ops"])  # nothing verified in this call
    verified = dict.fromkeys(study.OPS_USED, True)
    verified["relu"] = False
    failed = study.run_study(seed=0, size="small", verified=verified, stall=False)
    assert failed["passed"] is False and failed["problems"] == ["the study uses relu, which FAILED verification in this run"]


# -- the end-to-end check -----------------------------------------------------------------------


def test_the_end_to_end_check_passes_before_and_after_training(small):
    e2e = small["e2e"]
    assert e2e["parameters"] == study.Network(2, SMALL["hidden"], study.CLASSES).size
    for when in ("before", "after"):
        assert e2e[when]["passed"] is True and e2e[when]["mode"] == "full"
        assert e2e[when]["max_rel_error"] < 1e-6


def test_a_broken_network_backward_is_caught():
    net = study.Network(2, 5, 3)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 2)), rng.integers(0, 3, size=12)
    theta = net.init(0)
    assert study.check_network(net, theta, X, y).passed
    result = study.check_network(net, theta, X, y, backward=_broken_backward(net))
    assert not result.passed and result.blame == "analytic"
    # ... and it fails the study, before and after training.
    broken = study.run_study(seed=0, size="small", stall=False, _faults={"backward": _broken_backward(study.Network(2, SMALL["hidden"], study.CLASSES))})
    assert broken["passed"] is False
    assert not broken["e2e"]["before"]["passed"] and not broken["e2e"]["after"]["passed"]
    assert broken["e2e"]["before"]["blame"] == "analytic" and "FAILED" in broken["e2e"]["before"]["report"]
    assert sum("end-to-end check" in p for p in broken["problems"]) == 2


# -- the trajectory replay ----------------------------------------------------------------------


def test_every_trajectory_follows_the_catalog_update_rule(small):
    assert set(small["optimizers"]) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}
    for name, o in small["optimizers"].items():
        r = o["replay"]
        assert r["passed"] and r["first_bad_step"] is None, name
        assert r["steps"] == o["steps"] == SMALL["epochs"] * o["steps_per_epoch"]
        assert r["max_rel_deviation"] <= r["tolerance"]
    replayed = list(study._replayed(small))
    assert len(replayed) == 7 + len(study.SCHEDULES) + 2 + 2 + 2  # every training run of the study
    assert all(run["replay"]["passed"] and run["replay"]["steps"] == run["steps"] for _, _, run in replayed)


def test_the_replay_catches_momentum_with_the_wrong_sign():
    wrong = study.run_study(seed=0, size="small", stall=False, _faults={"steps": {"momentum": _wrong_momentum}})
    r = wrong["optimizers"]["momentum"]["replay"]
    assert not r["passed"] and r["first_bad_step"] == 0 and r["max_rel_deviation"] > 1e-3
    assert wrong["passed"] is False and any(p.startswith("momentum: training left the catalog's update rule at step 0") for p in wrong["problems"])
    assert all(o["replay"]["passed"] for name, o in wrong["optimizers"].items() if name != "momentum")
    # The schedules train with momentum too: their runs are caught as well, the SGD runs are not.
    assert not any(r["replay"]["passed"] for r in wrong["schedules"]["runs"].values())
    assert all(r["replay"]["passed"] for part in ("batch", "losses", "activations") for r in wrong[part]["runs"].values())


def test_the_replay_tolerates_nothing_but_rounding():
    """One ulp-sized nudge passes; a nudge of a millionth of the scale at one step is caught."""
    net = study.Network(2, 4, 3)
    data = study._data({"points": 60}, 0)
    run = study.train(net, data, optimizer="adam", hyper={"lr": 0.01}, epochs=2, batch=16, seed=0, record=True)
    assert study.replay("adam", run["trajectory"])["max_rel_deviation"] == 0.0
    nudged = list(run["trajectory"])
    theta, grad, kw = nudged[3]
    nudged[3] = (theta * (1 + 1e-6), grad, kw)
    assert study.replay("adam", nudged)["first_bad_step"] == 2
    theta, grad, kw = run["trajectory"][3]
    nudged = list(run["trajectory"])
    nudged[3] = (np.nextafter(theta, np.inf), grad, kw)
    assert study.replay("adam", nudged)["passed"]


# -- curves ------------------------------------------------------------------------------------------


def _all_runs(s):
    yield from (("optimizers", k, v) for k, v in s["optimizers"].items())
    for part in ("schedules", "batch", "losses", "activations"):
        yield from ((part, k, v) for k, v in s[part]["runs"].items())


def test_curves_have_one_value_per_epoch_and_are_finite(small):
    n_train = small["task"]["train"]
    assert n_train + small["task"]["validation"] == SMALL["points"]
    for part, name, run in _all_runs(small):
        curves = run["curves"]
        assert set(curves) == {"loss", "val_loss", "train_accuracy", "val_accuracy", "dead_fraction"}
        for key, values in curves.items():
            assert len(values) == SMALL["epochs"] + 1, (part, name, key)
            if part != "activations":  # a run at the activations' large rate may blow up; the others may not
                assert all(math.isfinite(v) for v in values), (part, name, key)
        assert all(0.0 <= v <= 1.0 for key in ("train_accuracy", "val_accuracy", "dead_fraction") for v in curves[key] if math.isfinite(v))
        assert run["steps"] == SMALL["epochs"] * run["steps_per_epoch"]
        assert len(run["lr"]) == min(run["steps"], 200) and run["lr"][-1][0] == run["steps"] - 1
    # Every run starts from the same untrained network.
    starts = {run["curves"]["loss"][0] for part, name, run in _all_runs(small) if part not in ("losses", "activations")}
    assert len(starts) == 1


def test_training_lowers_the_loss_for_every_optimizer(small):
    for name, o in small["optimizers"].items():
        assert o["curves"]["loss"][-1] < o["curves"]["loss"][0], name


def test_the_schedules_follow_the_catalog_ops(small):
    runs = small["schedules"]["runs"]
    assert set(runs) == set(study.SCHEDULES)
    base = small["schedules"]["base_lr"]
    assert all(lr == base for _, lr in runs["constant"]["lr"])
    for name in ("step_decay", "exponential_decay", "inverse_time_decay", "cosine_decay"):
        lrs = [lr for _, lr in runs[name]["lr"]]
        assert lrs[0] == pytest.approx(base) and lrs[-1] < base and all(b <= a + 1e-15 for a, b in zip(lrs, lrs[1:])), name
    warm = [lr for _, lr in runs["warmup_linear_decay"]["lr"]]
    assert warm[0] < max(warm) and warm[-1] < max(warm)


def test_small_and_large_batches(small):
    runs = small["batch"]["runs"]
    assert runs["large"]["batch"] == small["task"]["train"] and runs["large"]["steps_per_epoch"] == 1
    assert runs["small"]["steps"] == SMALL["epochs"] * math.ceil(small["task"]["train"] / runs["small"]["batch"])


def test_cross_entropy_and_mse_train_the_same_network(small):
    runs = small["losses"]["runs"]
    assert set(runs) == {"cross_entropy", "mse"}
    assert runs["cross_entropy"]["curves"]["train_accuracy"][0] == runs["mse"]["curves"]["train_accuracy"][0]  # same start
    assert runs["cross_entropy"]["curves"]["loss"][0] != runs["mse"]["curves"]["loss"][0]  # different losses


def test_a_dead_relu_unit_stays_dead_and_a_leaky_one_need_not(small):
    """A ReLU unit whose input is never positive on the training set gets no gradient from
    any minibatch, so the dead fraction never falls (exact, whatever the seed)."""
    for s in (small, study.run_study(seed=2, size="small", stall=False)):
        dead = s["activations"]["runs"]["relu"]["curves"]["dead_fraction"]
        assert all(b >= a for a, b in zip(dead, dead[1:]))
    cfg = study.SIZES["default"]
    data = study._data(cfg, 0)
    with np.errstate(all="ignore"):
        leaky = study.train(study.Network(2, 16, 3, activation="leaky_relu"), data, optimizer="sgd", hyper={"lr": study.ACTIVATION_LR}, epochs=8, batch=16, seed=0)
    dead = leaky["curves"]["dead_fraction"]
    assert any(b < a for a, b in zip(dead, dead[1:]))  # leaky units came back


def test_random_search_tries_more_distinct_rates_than_a_grid(small):
    s = small["search"]
    budget = SMALL["search_budget"]
    assert len(s["grid"]["trials"]) == len(s["random"]["trials"]) == budget
    assert s["random"]["distinct_lr"] == budget and s["grid"]["distinct_lr"] == math.isqrt(budget)
    for k in ("grid", "random"):
        values = [t["value"] for t in s[k]["trials"] if math.isfinite(t["value"])]
        assert s[k]["best"]["value"] == min(values)
        assert all(1e-3 <= t["lr"] <= 1.0 and 0.0 <= t["momentum"] <= 0.5 for t in s[k]["trials"])


# -- where training stalls -------------------------------------------------------------------


def test_stall_points_are_classified_by_critical_and_escape_steps_lower_the_loss(small):
    s = small["stall"]
    points = s["points"]
    assert len(points) == SMALL["stall_runs"] and sum(s["counts"].values()) == len(points)
    assert {p["verdict"] for p in points} <= VERDICTS
    saddles = [p for p in points if p["verdict"] == "saddle"]
    assert saddles  # seed 0 reaches at least one (deterministic)
    for p in points:
        assert 0.0 <= p["min_ratio"] <= 1.0 and len(p["eigenvalues"]) == s["parameters"]
        if p["verdict"] == "local minimum":
            assert p["min_ratio"] == 1.0 and p["negative"] == 0 and p["escape"] is None
        if p["verdict"] != "not critical":
            assert p["grad_norm"] < s["tol"]
    for p in saddles:
        e = p["escape"]
        assert p["negative"] >= 1 and e["eigenvalue"] < 0
        assert e["decrease"] > 0 and e["loss_after"] < e["loss_before"]
        assert e["resumed"]["verdict"] in VERDICTS


def test_the_verdicts_are_critical_classify_s():
    """A stall point's verdict is what gradverify.critical says of the same point."""
    model_points = study.stall_study(seed=3, runs=6, cap=3000)
    rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(3,)))
    X = rng.uniform(-1.0, 1.0, size=(study.STALL["points"], 2))
    Y = np.sin(2 * X[:, :1]) * np.cos(2 * X[:, 1:]) + 0.5 * X[:, :1] * X[:, 1:]
    model = study._TinyTanh(X, Y, study.STALL["hidden"])
    # A saddle by construction: the origin (every tanh unit off) with data the net can use.
    c = critical.classify(model.f, model.grad, np.zeros(model.n), gtol=1.0)
    assert c.verdict in ("saddle", "degenerate")
    assert all(p["verdict"] in VERDICTS for p in model_points["points"])


# -- the record and the page -------------------------------------------------------------------


def test_a_failed_study_fails_the_run_record(small):
    run = new_run("catalog", {"backend": "numpy"}, study=small)
    assert run["passed"] is True and run["study"]["passed"] is True
    failed = {**copy.deepcopy(small), "passed": False, "problems": ["broken"]}
    run = new_run("catalog", {"backend": "numpy"}, study=failed)
    assert run["passed"] is False
    page = render_html(run)
    assert 'id="study-problems"' in page and "broken" in page and 'id="verdict">FAILED' in page
    with pytest.raises(gradverify.InvalidArgument, match="study"):
        _record.validate({**run, "study": {"problems": []}})
    assert "study" not in new_run("catalog", {"backend": "numpy"})  # no study: no key


def test_the_page_shows_every_part_of_the_study(small):
    page = render_html(new_run("catalog", {"backend": "numpy"}, study=small))
    for key in ("optimizers", "schedules", "batch", "losses", "activations", "search", "stall"):
        assert f'id="study-{key}"' in page
    assert 'id="study-checks"' in page and 'id="study-escapes"' in page
    assert page.count('<span class="badge ok">same</span>') == 7


def test_a_damaged_study_entry_still_renders(small):
    for path, value in ((("optimizers",), 7), (("stall", "points"), "x"), (("e2e",), None), (("search", "grid"), []), (("schedules", "runs", "constant", "lr"), [1])):
        damaged = copy.deepcopy(small)
        target = damaged
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        page = render_html(new_run("catalog", {"backend": "numpy"}, study=damaged))
        assert page.startswith("<!DOCTYPE html>") and "is damaged" in page, path


# -- the command line -----------------------------------------------------------------------------


def test_gradverify_study_verifies_its_ops_runs_and_writes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    status = main(["study", "--size", "small", "--examples", "1", "--json", str(tmp_path / "run.json"), "--report", str(tmp_path / "index.html")])
    assert status == 0
    run = _record.read_run(tmp_path / "run.json")
    assert run["passed"] is True and [o["name"] for o in run["ops"]] == list(study.OPS_USED)
    assert all(op["verified"] is True for op in run["study"]["ops"])
    out = capsys.readouterr().out
    assert "training study (seed 0, small size" in out and "the training study passed" in out
    assert max(len(line) for line in out.splitlines() if str(tmp_path) not in line) <= 80
    assert 'id="study"' in (tmp_path / "index.html").read_text()


def test_gradverify_study_exits_one_when_the_study_fails(tmp_path, capsys, monkeypatch):
    real = study.run_study
    monkeypatch.setattr(study, "run_study", lambda **kw: real(**kw, stall=False, _faults={"steps": {"momentum": _wrong_momentum}}))
    monkeypatch.setattr(study, "OPS_USED", ("relu",))
    status = main(["study", "--size", "small", "--examples", "1", "--json", str(tmp_path / "run.json"), "--report", str(tmp_path / "index.html")])
    assert status == 1
    assert _record.read_run(tmp_path / "run.json")["passed"] is False
    assert "the training study FAILED" in capsys.readouterr().out


def test_ctrl_c_in_the_study_writes_an_interrupted_record_and_exits_130(tmp_path, capsys, monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "run_study", interrupted)
    monkeypatch.setattr(study, "OPS_USED", ("relu",))
    status = main(["study", "--examples", "1", "--json", str(tmp_path / "run.json"), "--report", str(tmp_path / "index.html")])
    assert status == 130
    run = _record.read_run(tmp_path / "run.json")
    assert (run["status"], run["passed"], run["provenance"]["interrupted_in"]) == ("interrupted", False, "the training study")
    assert "study" not in run and [o["name"] for o in run["ops"]] == ["relu"]
    assert "interrupted (Ctrl-C) in the training study" in capsys.readouterr().out


def test_gradverify_study_checks_its_outputs_first(tmp_path, capsys):
    assert main(["study", "--json", str(tmp_path), "--report", str(tmp_path / "r.html")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_verify_includes_the_study_on_request(tmp_path, capsys):
    status = main(["verify", "--ops", "relu", "--examples", "1", "--seed", "0", "--study", "small", "--json", str(tmp_path / "run.json"), "--report", str(tmp_path / "index.html")])
    assert status == 0
    run = _record.read_run(tmp_path / "run.json")
    verified = {op["name"]: op["verified"] for op in run["study"]["ops"]}
    assert verified["relu"] is True and verified["linear"] is None
    lines = study_lines(run["study"])
    assert any(line.startswith("  not verified in this run: standardization, linear") for line in lines)


# -- in a browser ---------------------------------------------------------------------------------


@needs_chromium
def test_the_study_in_chromium_at_1400px(tmp_path):
    s = study.run_study(seed=0, size="default")
    page = render_html(new_run("catalog", {"backend": "numpy"}, study=s))
    m, problems, requests = _measure(page, tmp_path, "study")
    _assert_fits(m)
    assert problems == [] and requests == []
    assert m["svgs"] == page.count("<svg") == 13
    _screenshot(page, tmp_path, "study", m["height"])
