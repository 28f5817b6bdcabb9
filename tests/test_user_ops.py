"""The user's own ops: ``@catalog.op`` and ``register``, ``gradverify verify --module``, the
``gradverify.ops`` entry points, and reproduce lines that run as printed."""

import doctest
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from gradverify import InvalidArgument, _record, _runner, catalog
from gradverify.__main__ import main
from gradverify.catalog import Example, Op

BIN = Path(sys.executable).parent

# A user's ops file: a square whose backward drops the factor 2 for negative inputs.
WRONG_SQUARE = '''
import time

import numpy as np
from hypothesis import strategies as st

from gradverify import catalog


def my_square_backward(dout, x):
    time.sleep({delay})
    return (dout * x * np.where(x > 0, 2.0, 1.0),)


@catalog.op(
    family="layer",
    backward=my_square_backward,
    examples=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=5).map(np.array),
    summary="x**2 with a backward that is wrong for x < 0",
)
def my_square(x):
    return x * x, x
'''


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    """Plain output; sys.path, the catalog and its loaded modules as they were."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "GRADVERIFY_PROFILE", "CI", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    registry, origins, loaded, modules = dict(catalog._REGISTRY), dict(catalog._ORIGINS), dict(catalog._LOADED), set(sys.modules)
    yield
    for store, saved in ((catalog._REGISTRY, registry), (catalog._ORIGINS, origins), (catalog._LOADED, loaded)):
        store.clear()
        store.update(saved)
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "GRADVERIFY_PROFILE", "CI", "COLUMNS")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _gradverify(words, cwd, **env):
    return subprocess.run(words, capture_output=True, text=True, cwd=cwd, env=_env(**env), timeout=300)


def _lines(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_the_catalog_docstrings_run():
    for module in (catalog, _runner):
        outcome = doctest.testmod(module, report=False)
        assert outcome.failed == 0 and outcome.attempted >= 1, module.__name__
    assert "my_cube" not in catalog.names()  # the example cleans up after itself


@pytest.mark.parametrize("spelling", ["file", "module"])
def test_a_wrong_user_op_fails_and_its_reproduce_line_runs_as_printed(tmp_path, spelling):
    """The acceptance test of issue 10, item 5."""
    (tmp_path / "my_ops.py").write_text(WRONG_SQUARE.format(delay=0))
    module = "my_ops.py" if spelling == "file" else "my_ops"
    first = _gradverify(["gradverify", "verify", "--module", module, "--ops", "my_square", "--examples", "20", "--dps", "45", "--json", "first.json", "--report", "first.html"], tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    (reproduce,) = _lines(first.stdout, "reproduce: ")
    command = reproduce.removeprefix("reproduce: ")
    assert command.startswith(f"gradverify verify --module {module} --ops my_square --backend numpy --seed ")
    assert command.endswith(" --examples 20 --dps 45")
    run = _record.read_run(tmp_path / "first.json")
    (op,) = run["ops"]
    assert op["failure"]["reproduce"] == command and op["origin"] == {"kind": "module", "source": module}
    assert op["blame"] == "analytic" and op["failure"]["inputs"][0][0] < 0

    again = _gradverify(shlex.split(command), tmp_path)  # as printed, from the same directory
    assert again.returncode == 1, again.stdout + again.stderr
    assert _lines(again.stdout, "inputs: ") == _lines(first.stdout, "inputs: ")  # the same shrunk example
    assert _lines(again.stdout, "reproduce: ") == [reproduce]
    assert "1 of 1 ops FAILED" in again.stdout


def test_user_ops_run_next_to_the_catalog(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_ops.py").write_text(WRONG_SQUARE.format(delay=0))
    monkeypatch.chdir(tmp_path)
    status = main(["verify", "--module", "my_ops.py", "--ops", "relu,my_*", "--examples", "5", "--seed", "3", "--json", "r.json", "--report", "r.html"])
    assert status == 1
    run = _record.read_run(tmp_path / "r.json")
    assert [(o["name"], o["passed"]) for o in run["ops"]] == [("my_square", False), ("relu", True)]
    assert run["provenance"]["modules"] == ["my_ops.py"]
    assert catalog.origin("my_square") == catalog.Origin("module", "my_ops.py")
    assert "verifying my_square ... failed at example" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("module", "content", "message"),
    [
        ("missing.py", None, "--module 'missing.py': the ops file 'missing.py' does not exist"),
        ("no_such_module", None, "no module named 'no_such_module'"),
        ("broken.py", "import numpy\n1 / 0\n", "the ops module 'broken.py' failed to import: ZeroDivisionError: division by zero (at "),
        ("syntax.py", "def f(:\n", "failed to import: SyntaxError: "),
        ("needs.py", "import not_installed_anywhere\n", "ModuleNotFoundError: No module named 'not_installed_anywhere'"),
        ("clash.py", "from gradverify import catalog\ncatalog.register(catalog.get('relu'))\n", "an op named 'relu' is already registered (by gradverify's catalog)"),
        (
            "bad_family.py",
            "from gradverify import catalog\n@catalog.op(family='layers', backward=None, examples=None, summary='')\ndef f(x):\n    return x, x\n",
            "has family 'layers'; choose from layer, loss",
        ),
        ("comma.py", "from gradverify import catalog\ncatalog.register(catalog.Op('a,b', 'layer', abs, None, list, ''))\n", "op name 'a,b' must be"),
    ],
)
def test_a_bad_module_is_a_usage_error_naming_it(tmp_path, monkeypatch, capsys, module, content, message):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / module).write_text(content)
    before = catalog.names()
    assert main(["verify", "--module", module, "--ops", "relu", "--json", "r.json", "--report", "r.html"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert catalog.names() == before  # a module that failed halfway registers nothing


def test_a_module_that_registers_nothing_is_noted(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_ops.py").write_text("")
    assert main(["verify", "--module", "empty_ops.py", "--ops", "relu", "--examples", "2", "--json", "r.json", "--report", "r.html"]) == 0
    assert "--module 'empty_ops.py' registered no new op" in capsys.readouterr().err


def test_load_module_loads_once(tmp_path):
    path = tmp_path / "once_ops.py"
    path.write_text(WRONG_SQUARE.format(delay=0))
    assert catalog.load_module(str(path)) == ("my_square",)
    assert catalog.load_module(str(path)) == ("my_square",)  # not again: no "already registered"
    assert catalog.get("my_square").summary.startswith("x**2")


def test_register_rejects_what_is_no_op():
    with pytest.raises(InvalidArgument, match="takes a gradverify.catalog.Op, not dict"):
        catalog.register({"name": "x"})
    with pytest.raises(InvalidArgument, match="must be a non-empty string without spaces"):
        catalog.register(Op("my op", "layer", abs, None, list, ""))
    with pytest.raises(InvalidArgument, match="forward must be callable"):
        catalog.register(Op("my_op", "layer", 3, None, list, ""))
    with pytest.raises(InvalidArgument, match="no op named 'nope'"):
        catalog.unregister("nope")


def test_the_decorator_takes_strategies_of_arrays_tuples_or_examples():
    xs = st.just(np.array([0.5, -1.5]))

    @catalog.op(family="layer", backward=lambda dout, x: (dout * np.cos(x),), examples=xs, summary="sine")
    def my_sin(x):
        return np.sin(x), x

    @catalog.op(name="my_mul", family="layer", backward=lambda dout, c: (dout * c[1], dout * c[0]), examples=lambda: st.tuples(xs, xs), summary="product")
    def multiply(x, y):
        return x * y, (x, y)

    assert my_sin(np.array(0.0))[0] == 0.0  # the forward is returned unchanged
    import array_api_compat.numpy as xp

    for name in ("my_sin", "my_mul"):
        outcome = _runner.verify_op(catalog.get(name), xp, examples=2, seed=0)
        assert outcome.passed and outcome.examples == 1  # st.just: one distinct example


# -- entry points ---------------------------------------------------------------------------------


def _install(site, package, module, source, entry):
    """A package installed into ``site`` as pip would: its module and a dist-info directory
    whose entry_points.txt declares ``entry`` in the gradverify.ops group."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[gradverify.ops]\n{entry}\n")


CUBE = """
    import numpy as np
    from hypothesis import strategies as st

    from gradverify import catalog

    def cube_backward(dout, x):
        return (dout * 3.0 * x * x,)

    @catalog.op(family="layer", backward=cube_backward, summary="x**3",
                examples=st.lists(st.floats(-3, 3), min_size=1, max_size=4).map(np.array))
    def plugin_cube(x):
        return x**3, x
"""

RETURNS_OPS = """
    import numpy as np
    from hypothesis import strategies as st

    from gradverify.catalog import Example, Op

    def ops():
        examples = st.lists(st.floats(-3, 3), min_size=1, max_size=4).map(lambda xs: Example((np.array(xs),)))
        return [Op("plugin_double", "layer", lambda x: (2.0 * x, None), lambda dout, cache: (2.0 * dout,), lambda: examples, "2 x")]
"""


def test_installed_packages_ops_load_by_themselves(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    _install(site, "cube_ops", "cube_ops_module", CUBE, "cube = cube_ops_module")
    _install(site, "double_ops", "double_ops_module", RETURNS_OPS, "double = double_ops_module:ops")
    monkeypatch.syspath_prepend(str(site))
    status = main(["verify", "--ops", "plugin_*", "--examples", "3", "--seed", "0", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")])
    assert status == 0, capsys.readouterr()
    run = _record.read_run(tmp_path / "r.json")
    assert [o["name"] for o in run["ops"]] == ["plugin_cube", "plugin_double"]
    assert catalog.origin("plugin_cube") == catalog.Origin("entry point", "cube = cube_ops_module")
    assert catalog.origin("plugin_double") == catalog.Origin("entry point", "double = double_ops_module:ops")
    assert catalog.load_entry_points() == ("plugin_cube", "plugin_double")  # loaded once


def test_a_broken_entry_point_is_a_clear_error_naming_it(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    _install(site, "shaky-ops", "shaky_ops_module", "raise ImportError('needs a GPU library')\n", "shaky = shaky_ops_module")
    monkeypatch.syspath_prepend(str(site))
    assert main(["verify", "--ops", "relu", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "the 'gradverify.ops' entry point 'shaky' (shaky_ops_module, installed by shaky-ops) failed to load: ImportError: needs a GPU library" in err
    assert "fix or uninstall shaky-ops" in err and "Traceback" not in err


# -- Ctrl-C while shrinking -------------------------------------------------------------------------


def test_ctrl_c_while_shrinking_keeps_the_failure_found(tmp_path):
    """The failure is in the record, marked not minimal, with a reproduce line."""
    (tmp_path / "slow_ops.py").write_text(WRONG_SQUARE.format(delay=0.05))
    proc = subprocess.Popen(
        ["gradverify", "verify", "--module", "slow_ops.py", "--ops", "my_square", "--examples", "50", "--seed", "1", "--json", "run.json", "--report", "run.html"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # see test_cli's Ctrl-C test
    )
    seen = ""
    try:
        while "shrinking ..." not in seen:
            char = proc.stdout.read(1)
            assert char, seen
            seen += char
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = seen + out
    assert proc.returncode == 130 and "Traceback" not in err, out + err
    assert "FAILED (" in out and "shrinking interrupted after" in out
    run = _record.read_run(tmp_path / "run.json")
    (op,) = run["ops"]
    assert (run["status"], run["passed"], op["passed"], op["failure"]["shrunk"]) == ("interrupted", False, False, False)
    assert op["failure"]["reproduce"].startswith("gradverify verify --module slow_ops.py --ops my_square ")
    assert "failing example (shrinking interrupted, not minimal)" in out


# -- what a failure is ----------------------------------------------------------------------------


def _square_op(name, **changes):
    examples = st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=3).map(lambda xs: Example((np.array(xs),)))
    fields = {"forward": lambda x: (x * x, x), "backward": lambda dout, x: (2.0 * dout * x,), "examples": lambda: examples, **changes}
    return Op(name, "layer", fields["forward"], fields["backward"], fields["examples"], "x**2", properties=changes.get("properties"))


def _never_negative(example, xp):
    (x,) = example.inputs
    assert np.all(x >= 0), f"{x} has a negative element"


def _raises(x):
    raise ValueError("the forward broke")


def _broken_strategy():
    raise RuntimeError("no examples today")


@pytest.mark.parametrize(
    ("changes", "kind", "blame", "report"),
    [
        ({"properties": _never_negative}, "property", "analytic", "property: [-1.] has a negative element"),
        ({"forward": _raises}, "error", None, "UserFunctionError"),
        ({"examples": _broken_strategy}, "error", None, "RuntimeError: no examples today"),
    ],
)
def test_properties_and_errors_are_failures_of_their_own_kind(changes, kind, blame, report):
    import array_api_compat.numpy as xp

    outcome = _runner.verify_op(_square_op("my_failing_square", **changes), xp, examples=20, seed=0)
    assert (outcome.passed, outcome.blame, outcome.failure["kind"]) == (False, blame, kind)
    assert report in outcome.failure["report"]
    assert outcome.examples <= 20
    assert outcome.failure["reproduce"] == "gradverify verify --ops my_failing_square --backend numpy --seed 0 --examples 20"
