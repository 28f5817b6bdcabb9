"""The training study's section of the report, drawn from the record's ``"study"`` entry.

The numbers come from :func:`gradverify.study.run_study`, run during ``gradverify verify``
or ``gradverify study``; drawing needs only the record (nothing here imports the catalog).
A damaged entry shows what is wrong in its place, never a traceback.
"""

import math

import numpy as np

from gradverify.report._plots import _as_float
from gradverify.report._svg import PALETTE, Axis, Figure

# Panel sizes (the plotting frame, margins come on top): three fit side by side in 1320 px.
WIDE, NARROW, HEIGHT = 520, 330, 210
VERDICT_COLORS = {"local minimum": PALETTE[0], "saddle": PALETTE[1], "degenerate": PALETTE[3], "not critical": "#888888", "local maximum": PALETTE[2], "nonfinite": "#000000"}
_DAMAGED = (KeyError, TypeError, ValueError, IndexError, AttributeError)
LABELS = {"sgd": "SGD", "momentum": "momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad", "rmsprop": "RMSProp", "adam": "Adam", "adamw": "AdamW"}


def study_context(study):
    """``None`` without a study; else ``{"passed", "problems", "sections": [...], ...}`` for the template.

    Each section is ``{"key", "title", "html": [chart, ...], "caption", "error"}``.
    """
    if study is None:
        return None
    if not isinstance(study, dict):
        return {"passed": False, "problems": ["the study's entry in the record is not an object"], "sections": [], "facts": _facts({}), "checks": None, "stall": None}
    sections = []
    for key, title, draw, caption in _SECTIONS:
        if key == "stall" and study.get("stall", "missing") is None:
            continue  # left out on purpose (run_study(stall=False))
        try:
            charts, text, error = draw(study), caption(study), ""
        except _DAMAGED as exc:
            charts, text, error = [], "", f"this part of the study's record is damaged ({type(exc).__name__}: {exc})"
        sections.append({"key": key, "title": title, "html": charts, "caption": text, "error": error})
    try:
        checks = _checks(study)
    except _DAMAGED as exc:
        checks = {"error": f"the checks' record is damaged ({type(exc).__name__}: {exc})"}
    try:
        stall = _stall_table(study) if study.get("stall") is not None else None
    except _DAMAGED:
        stall = None
    return {
        "passed": study.get("passed") is True,
        "problems": [str(p) for p in study.get("problems", []) if isinstance(p, str)] if isinstance(study.get("problems"), list) else [],
        "facts": _facts(study),
        "sections": sections,
        "checks": checks,
        "stall": stall,
    }


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _facts(study):
    task, net = _get(study, "task", default={}), _get(study, "network", default={})
    return {
        "task": f"{str(_get(task, 'name', default='?'))[:1].upper()}{str(_get(task, 'name', default='?'))[1:]}: {_get(task, 'train', default='?')} training and {_get(task, 'validation', default='?')} validation points, {_get(task, 'classes', default='?')} classes, standardized with the training split's mean and std",
        "network": f"{_get(net, 'layers', default='?')} ({_get(net, 'parameters', default='?')} parameters), {_get(net, 'epochs', default='?')} epochs of minibatches of {_get(net, 'batch', default='?')}, shuffled each epoch",
        "seed": _get(study, "seed"),
        "size": _get(study, "size"),
        "seconds": _get(study, "seconds"),
    }


# -- curves -----------------------------------------------------------------------------------


def _range(series, *, log=False, floor=1e-6):
    """An axis range holding every finite value of ``series`` (positive ones on a log axis),
    padded a little; a log range always spans at least one power of ten (so it has a tick)."""
    values = np.concatenate([_as_float(s) for s in series]) if series else np.array([])
    values = values[np.isfinite(values)]
    if log:
        values = values[values > 0]
        if not values.size:
            return floor, 1.0
        lo, hi = max(float(values.min()), floor) / 1.3, float(values.max()) * 1.3
        if math.floor(math.log10(hi)) < math.ceil(math.log10(lo)):  # no power of ten inside
            lo = 10 ** math.floor(math.log10(lo))
        return lo, hi
    if not values.size:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def _log_axis(lo, hi, label):
    """A log axis; under two powers of ten it gets 1-2-5 ticks (decades alone would leave one or two)."""
    ticks = None
    if math.log10(hi / lo) < 2:
        ticks = [(m * 10.0**k, f"{m * 10.0**k:g}") for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5) if lo <= m * 10.0**k <= hi]
    return Axis(lo, hi, log=True, label=label, ticks=ticks)


def _accuracy_range(series):
    """From the tenth below the lowest accuracy (0 at the least) to 1."""
    values = np.concatenate([_as_float(s) for s in series])
    values = values[np.isfinite(values)]
    low = math.floor(10 * float(values.min())) / 10 if values.size else 0.0
    return max(0.0, min(low, 0.9)), 1.0 + 0.02


def _curves(key, runs, metric, *, title, ylabel, log=False, width=NARROW, labels=None, accuracy=False):
    """One panel: ``metric`` per epoch for each run of ``runs`` ({name: run}), one colour each."""
    series = {name: run["curves"][metric] for name, run in runs.items()}
    epochs = max(len(s) for s in series.values()) - 1
    lo, hi = _accuracy_range(list(series.values())) if accuracy else _range(list(series.values()), log=log)
    y = _log_axis(lo, hi, ylabel) if log else Axis(lo, hi, label=ylabel)
    fig = Figure(key, x=Axis(0, max(epochs, 1), label="epoch"), y=y, title=title, width=width, height=HEIGHT)
    for (name, values), color in zip(series.items(), PALETTE * 2):
        ys = _as_float(values)
        fig.line(list(range(len(ys))), ys, color=color, label=(labels or {}).get(name, name))
    return fig.html()


def _optimizers(study):
    runs = study["optimizers"]
    labels = {name: f"{LABELS.get(name, name)} (lr {run['hyper']['lr']:g})" for name, run in runs.items()}
    return [
        _curves("study-opt-loss", runs, "loss", title="Training loss (whole training set) by optimizer", ylabel="cross-entropy", log=True, width=WIDE, labels=labels),
        _curves("study-opt-acc", runs, "val_accuracy", title="Validation accuracy by optimizer", ylabel="accuracy", width=WIDE, labels=labels, accuracy=True),
    ]


def _schedules(study):
    runs = study["schedules"]["runs"]
    lr = {name: np.array([p[1] for p in run["lr"]], dtype=float) for name, run in runs.items()}
    steps = {name: [p[0] for p in run["lr"]] for name, run in runs.items()}
    top = max(float(np.max(v)) for v in lr.values() if v.size)
    fig = Figure("study-sched-lr", x=Axis(0, max(max(s) for s in steps.values()), label="step"), y=Axis(0, 1.1 * top, label="learning rate"), title="Learning rate per step (catalog schedule ops)", width=NARROW, height=HEIGHT)
    for (name, values), color in zip(lr.items(), PALETTE):
        fig.line(steps[name], values, color=color, label=name.replace("_", " "))
    labels = {name: name.replace("_", " ") for name in runs}
    return [
        fig.html(),
        _curves("study-sched-loss", runs, "loss", title=f"Training loss, {study['schedules']['optimizer']} from lr {study['schedules']['base_lr']:g}", ylabel="cross-entropy", log=True, labels=labels),
        _curves("study-sched-acc", runs, "val_accuracy", title="Validation accuracy by schedule", ylabel="accuracy", labels=labels, accuracy=True),
    ]


def _batch(study):
    runs = study["batch"]["runs"]
    labels = {name: f"batch {run['batch']} ({run['steps']} steps)" for name, run in runs.items()}
    return [
        _curves("study-batch-loss", runs, "loss", title=f"Small against large batches: training loss (SGD, lr {study['batch']['lr']:g})", ylabel="cross-entropy", log=True, labels=labels),
        _curves("study-batch-acc", runs, "val_accuracy", title="Small against large batches: validation accuracy", ylabel="accuracy", labels=labels, accuracy=True),
    ]


def _losses(study):
    runs = study["losses"]["runs"]
    labels = {"cross_entropy": "softmax cross-entropy", "mse": "MSE of softmax vs one-hot"}
    return [
        _curves("study-loss-train", runs, "train_accuracy", title=f"Cross-entropy against MSE: training accuracy (SGD, lr {study['losses']['lr']:g})", ylabel="accuracy", labels=labels, accuracy=True),
        _curves("study-loss-val", runs, "val_accuracy", title="Cross-entropy against MSE: validation accuracy", ylabel="accuracy", labels=labels, accuracy=True),
    ]


def _activations(study):
    runs = study["activations"]["runs"]
    labels = {"relu": "ReLU", "leaky_relu": "leaky ReLU (slope 0.01)"}
    return [
        _curves("study-act-dead", runs, "dead_fraction", title=f"Hidden units with no positive input on the training set (SGD, lr {study['activations']['lr']:g})", ylabel="fraction of units", labels=labels, accuracy=True),
        _curves("study-act-acc", runs, "val_accuracy", title="ReLU against leaky ReLU: validation accuracy", ylabel="accuracy", labels=labels, accuracy=True),
    ]


def _search(study):
    s = study["search"]
    lo, hi = s["space"]["lr"][0], s["space"]["lr"][1]
    values = [t["value"] for k in ("grid", "random") for t in s[k]["trials"]]
    ylo, yhi = _range([values], log=True, floor=1e-3)
    fig = Figure(
        "study-search",
        x=Axis(lo, hi, log=True, label="learning rate (log scale)"),
        y=_log_axis(ylo, yhi, s["objective"]),
        title=f"Random against grid search, {s['budget']} trials each ({s['epochs']} epochs per trial)",
        width=WIDE,
        height=HEIGHT,
    )
    for k, color, label in (("grid", PALETTE[0], "grid"), ("random", PALETTE[1], "random")):
        trials = s[k]["trials"]
        fig.points([t["lr"] for t in trials], [t["value"] for t in trials], color=color, radius=4, opacity=0.85, label=f"{label}: {s[k]['distinct_lr']} distinct rates, best {_num(s[k]['best']['value'])} at lr {_num(s[k]['best']['lr'])}")
        best = s[k]["best"]
        fig.points([best["lr"]], [best["value"]], color=color, radius=8, hollow=True, opacity=1)
    diverged = sum(1 for v in values if not math.isfinite(_as_float([v])[0]))
    if diverged:
        fig.note(f"{diverged} trial(s) diverged (no value) and are not drawn.")
    return [fig.html()]


def _stall(study):
    s = study["stall"]
    points = s["points"]
    losses = [p["loss"] for p in points]
    ylo, yhi = _range([losses], log=True, floor=1e-8)
    fig = Figure(
        "study-stall",
        x=Axis(-0.02, 1.02, label="minimum ratio: share of Hessian eigenvalues > etol"),
        y=_log_axis(ylo, yhi, "loss where training stopped"),
        title=f"Where gradient descent stalls: {len(points)} runs of a {s['network']}",
        width=WIDE,
        height=260,
    )
    for verdict, color in VERDICT_COLORS.items():
        chosen = [p for p in points if p["verdict"] == verdict and p["min_ratio"] is not None]
        if chosen:
            fig.points([p["min_ratio"] for p in chosen], [p["loss"] for p in chosen], color=color, radius=4.5, opacity=0.8, label=f"{verdict} ({len(chosen)})")
    escaped = [p for p in points if p.get("escape") and p["escape"].get("resumed")]
    if escaped:
        fig.points([p["min_ratio"] for p in escaped], [p["escape"]["resumed"]["loss"] for p in escaped], color="#000000", radius=3, hollow=True, opacity=0.9, label="after the escape step and more descent")
        for p in escaped:
            fig.line([p["min_ratio"], p["min_ratio"]], [p["loss"], p["escape"]["resumed"]["loss"]], color="#555555", width=0.8, dash="2 2")
    return [fig.html()]


def _stall_table(study):
    s = study["stall"]
    rows = []
    for p in s["points"]:
        e = p.get("escape")
        if not e:
            continue
        r = e.get("resumed") or {}
        rows.append(
            {
                "run": p["run"],
                "loss": p["loss"],
                "min_ratio": p["min_ratio"],
                "negative": p["negative"],
                "eigenvalue": e["eigenvalue"],
                "step": e["step"],
                "after": e["loss_after"],
                "decrease": e["decrease"],
                "resumed_loss": r.get("loss"),
                "resumed_verdict": r.get("verdict", "—"),
                "resumed_steps": r.get("steps"),
            }
        )
    counts = s["counts"]
    n = len(s["points"])
    stalled = ", ".join(f"{k}: {v} of {n}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return {"rows": rows, "counts": stalled, "tol": s["tol"], "cap": s["cap"], "lr": s["lr"], "network": s["network"]}


def _num(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return f"{x:.3g}"


def _other_replays(study):
    """The replays of the runs besides the optimizers' (schedules, batches, losses, activations), in words."""
    runs = [(part, name, run["replay"]) for part in ("schedules", "batch", "losses", "activations") for name, run in _get(study, part, "runs", default={}).items() if isinstance(run, dict) and isinstance(run.get("replay"), dict)]
    if not runs:
        return ""
    bad = [f"{part} {name} (step {r['first_bad_step']})" for part, name, r in runs if r.get("passed") is not True]
    worst = max(float(r["max_rel_deviation"]) for _, _, r in runs)
    if bad:
        return f"The other {len(runs)} training runs were replayed too: {len(bad)} left the rule: {', '.join(bad)}."
    return f"The other {len(runs)} training runs (schedules, batch sizes, losses, activations) were replayed too: every one followed the rule (max deviation {worst:.1e})."


def _checks(study):
    e2e = study["e2e"]
    return {
        "error": "",
        "e2e": [
            {"when": when, "passed": e2e[when]["passed"] is True, "error": e2e[when]["max_rel_error"], "blame": e2e[when]["blame"], "mode": e2e[when]["mode"], "truth": e2e[when]["truth"], "report": e2e[when].get("report", "")}
            for when in ("before", "after")
        ],
        "e2e_what": f"the loss on {e2e['batch']} training points, differentiated with respect to all {e2e['parameters']} parameters (after training: the {LABELS.get(e2e['trained_with'], e2e['trained_with'])}-trained network)",
        "replay": [
            {"name": LABELS.get(name, name), "steps": o["replay"]["steps"], "abs": o["replay"]["max_abs_deviation"], "rel": o["replay"]["max_rel_deviation"], "passed": o["replay"]["passed"] is True, "first_bad": o["replay"]["first_bad_step"]}
            for name, o in study["optimizers"].items()
        ],
        "tolerance": next(iter(study["optimizers"].values()))["replay"]["tolerance"],
        "others": _other_replays(study),
        "op_groups": [
            ("FAILED verification", [op["name"] for op in study["ops"] if op["verified"] is False], "bad"),
            ("verified in this run", [op["name"] for op in study["ops"] if op["verified"] is True], "ok"),
            ("not checked in this run", [op["name"] for op in study["ops"] if op["verified"] is None], "verdict"),
        ],
    }


def _caption_optimizers(study):
    final = {LABELS.get(n, n): o["curves"]["val_accuracy"][-1] for n, o in study["optimizers"].items()}
    best = max(final, key=lambda k: final[k])
    return (
        "Each optimizer is the catalog's update rule applied to the flat parameter vector, from the same initialization and the same shuffled minibatches; "
        f"the learning rates are each one's own (in the legend). After the last epoch the best validation accuracy is {best}'s ({final[best]:.2f})."
    )


def _caption_schedules(study):
    return "Every schedule scales the same base rate (momentum 0.9); the decaying ones trade the last epochs' progress for smaller, steadier steps. The rate is drawn as the catalog's schedule op computed it at each step."


def _caption_batch(study):
    runs = study["batch"]["runs"]
    return (
        f"At the same number of epochs and the same rate, batches of {runs['small']['batch']} take {runs['small']['steps']} steps and the full batch of {runs['large']['batch']} only {runs['large']['steps']}: "
        "per epoch the small batches go much further, each step on a noisier gradient."
    )


def _caption_losses(study):
    return "The same network and rate; MSE is taken on the softmax probabilities against one-hot targets, whose gradient fades as a wrong output saturates, while cross-entropy's does not. The two losses differ in scale, so accuracy is compared."


def _caption_activations(study):
    runs = study["activations"]["runs"]
    relu, leaky = runs["relu"]["curves"]["dead_fraction"], runs["leaky_relu"]["curves"]["dead_fraction"]
    return (
        f"At this large rate, ReLU units are pushed where their input is never positive; such a unit passes no gradient to its weights, so it stays dead (ReLU: {relu[-1]:.2f} of the units at the end, at most {max(relu):.2f}). "
        f"Leaky ReLU passes a slope of 0.01 there, and its units can come back (at the end {leaky[-1]:.2f}, at most {max(leaky):.2f})."
    )


def _caption_search(study):
    s = study["search"]
    return (
        f"The objective is the validation loss after {s['epochs']} epochs of SGD with momentum; the rate matters and the momentum (in [0, 0.5]) hardly does. "
        f"At the same budget the grid tries {s['grid']['distinct_lr']} distinct rates and the random search {s['random']['distinct_lr']}: "
        f"best {_num(s['grid']['best']['value'])} (grid) against {_num(s['random']['best']['value'])} (random)."
    )


def _caption_stall(study):
    s = study["stall"]
    n = len(s["points"])
    counts = s["counts"]
    saddles = [p for p in s["points"] if p.get("escape")]
    lowered = sum(1 for p in saddles if p["escape"]["decrease"] > 0)
    resumed = [p for p in saddles if isinstance(p["escape"].get("resumed"), dict)]
    lower = sum(1 for p in resumed if p["escape"]["resumed"]["loss"] < p["loss"])
    minima = [p["loss"] for p in s["points"] if p["verdict"] == "local minimum"]
    at_saddles = [p["loss"] for p in s["points"] if p["verdict"] == "saddle"]
    capped = [p for p in s["points"] if p["verdict"] == "not critical"]
    curved = sum(1 for p in capped if p["negative"] > 0)
    where = f" {curved} of the {len(capped)} runs stopped by the cap still had negative curvature: they were crawling along a plateau near a saddle." if capped else ""
    scales = sorted({p["init_scale"] for p in s["points"]})
    if len(scales) > 1:
        parts = []
        for scale in scales:
            runs = [p for p in s["points"] if p["init_scale"] == scale]
            verdicts = {}
            for p in runs:
                verdicts[p["verdict"]] = verdicts.get(p["verdict"], 0) + 1
            parts.append(f"{scale:g}: " + ", ".join(f"{v} {k}" for k, v in sorted(verdicts.items(), key=lambda kv: -kv[1])) + f" (of {len(runs)})")
        where += " By the scale of the initial weights, " + "; ".join(parts) + "."
    if minima and at_saddles:
        where += f" The median loss is {_num(np.median(at_saddles))} at the saddles and {_num(np.median(minima))} at the minima."
    return (
        f"Plain gradient descent (rate {s['lr']:g}) from {n} initializations of three scales, stopped when ‖∇L‖ < {s['tol']:g} (or after {s['cap']} steps); each point classified by gradverify.critical with gtol = {s['tol']:g}. "
        f"Of the {n} points where training stopped, {counts.get('local minimum', 0)} are local minima, {counts.get('saddle', 0)} saddles, {counts.get('degenerate', 0)} degenerate and {counts.get('not critical', 0)} not critical (the step cap came first).{where} "
        f"At {lowered} of {len(saddles)} points with a negative eigenvalue a step along its eigenvector lowered the loss; descent resumed from there (hollow circles) ended below the stall point in {lower} of {len(resumed)}."
    )


_SECTIONS = (
    ("optimizers", "Optimizers", _optimizers, _caption_optimizers),
    ("schedules", "Learning-rate schedules", _schedules, _caption_schedules),
    ("batch", "Batch size", _batch, _caption_batch),
    ("losses", "Cross-entropy against MSE", _losses, _caption_losses),
    ("activations", "Dead units: ReLU against leaky ReLU", _activations, _caption_activations),
    ("search", "Random against grid search", _search, _caption_search),
    ("stall", "Where training stalls", _stall, _caption_stall),
)
