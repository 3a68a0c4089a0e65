"""scripts/mutate_select.py: the test selection and code swapping that make `make mutate` fast must never change a
mutant's verdict. Pinned here: who counts as having executed a line, what runs for import-time code, and that a
swapped function behaves as the mutant everywhere it is referenced."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from mutate_select import ALL, Coverage, swap_in  # noqa: E402

TESTS = ["t.py::a", "t.py::b", "t.py::c", "t.py::d"]


def coverage(lines: dict, forkers=(), uses=None) -> Coverage:
    uses = uses or {"t.py::a": ["fx"], "t.py::b": [], "t.py::c": ["fx", "tmp_path"], "t.py::d": []}
    return Coverage(TESTS, uses, {t: 1.0 for t in TESTS} | {"fixture:fx": 5.0}, list(forkers), 0.5, lines)


def test_select_gives_the_tests_that_ran_a_line_in_collection_order():
    cov = coverage({10: ["t.py::d", "t.py::b"], 11: ["t.py::b"]})
    assert cov.select(10, 10) == ["t.py::b", "t.py::d"]
    assert cov.select(11, 11) == ["t.py::b"]
    assert cov.select(12, 12) == []  # never executed: nothing to run
    assert cov.select(11, 12) == ["t.py::b"]  # a span unites its lines
    assert cov.select(9, 10) == ["t.py::b", "t.py::d"]


def test_a_broad_fixture_line_counts_for_every_test_that_requests_the_fixture():
    # the fixture ran during a's setup only, but c uses its cached value too
    cov = coverage({20: ["fixture:fx"], 21: ["fixture:fx", "t.py::d"]})
    assert cov.select(20, 20) == ["t.py::a", "t.py::c"]
    assert cov.select(21, 21) == ["t.py::a", "t.py::c", "t.py::d"]


def test_import_time_code_runs_the_whole_list_and_is_not_swapped():
    cov = coverage({5: [None], 6: [None, "t.py::a"], 7: ["t.py::a"]})
    assert cov.select(5, 5) is ALL and cov.at_import(5, 5)
    assert cov.select(6, 6) is ALL and cov.at_import(6, 7)
    assert cov.select(7, 7) == ["t.py::a"] and not cov.at_import(7, 7)


def test_tests_that_fork_run_for_every_executed_mutant():
    cov = coverage({10: ["t.py::b"]}, forkers=["t.py::d"])
    assert cov.select(10, 10) == ["t.py::b", "t.py::d"]
    assert cov.select(12, 12) == []  # still nothing for code no one ran
    assert coverage({10: ["t.py::b"]}, forkers=["fixture:fx"]).select(10, 10) == TESTS[:3]
    assert coverage({10: ["t.py::b"]}, forkers=[None]).select(10, 10) is ALL


def test_estimate_counts_the_selected_tests_and_their_broad_fixtures():
    cov = coverage({})
    assert cov.estimate_s(["t.py::b"]) == pytest.approx(0.5 + 1.0)
    assert cov.estimate_s(["t.py::a", "t.py::c"]) == pytest.approx(0.5 + 2.0 + 5.0)
    assert cov.estimate_s(ALL) == pytest.approx(0.5 + 4.0 + 5.0)


MODULE = textwrap.dedent("""\
    import functools

    LIMIT = 3

    def small(x):
        return x < LIMIT

    def outer(n):
        def inner(k):
            return k + n
        return inner

    class Box:
        size = 2

        def area(self):
            return self.size * self.size

    @functools.lru_cache(maxsize=None)
    def cached(x):
        return x * 10

    made_early = outer(100)
""")


class _Swap(ast.NodeTransformer):
    def __init__(self, kind):
        self.kind = kind

    def visit_Compare(self, node):  # small: < -> <=
        if self.kind == "compare":
            node.ops = [ast.LtE()]
        return node

    def visit_BinOp(self, node):
        if self.kind == "inner" and isinstance(node.op, ast.Add):
            node.op = ast.Sub()
        if self.kind == "area" and isinstance(node.op, ast.Mult) and isinstance(node.left, ast.Attribute):
            node.op = ast.Add()
        return node

    def visit_Constant(self, node):
        if self.kind == "module" and node.value == 3:
            return ast.copy_location(ast.Constant(4), node)
        if self.kind == "class" and node.value == 2:
            return ast.copy_location(ast.Constant(5), node)
        return node


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toymod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toymod", None)
    mod = importlib.import_module("toymod")
    yield mod, str(tmp_path / "toymod.py")
    sys.modules.pop("toymod", None)


def _codes(path, kind):
    tree = ast.parse(Path(path).read_text())
    original = compile(tree, path, "exec", dont_inherit=True)
    mutant = ast.fix_missing_locations(_Swap(kind).visit(ast.parse(Path(path).read_text())))
    return original, compile(mutant, path, "exec", dont_inherit=True)


def test_swap_changes_a_function_everywhere_it_is_referenced(toy):
    mod, path = toy
    alias = mod.small  # as `from toymod import small` would hold it
    assert alias(3) is False
    assert swap_in(path, *_codes(path, "compare"))
    assert alias(3) is True and mod.small(3) is True
    assert mod.small(4) is False


def test_swap_reaches_methods_and_closures_made_before_and_after(toy):
    mod, path = toy
    assert mod.made_early(1) == 101 and mod.Box().area() == 4
    assert swap_in(path, *_codes(path, "inner"))
    assert mod.outer(100)(1) == -99  # a closure made after the swap: k - n
    assert mod.made_early(1) == -99  # and one made at import
    assert swap_in(path, *_codes(path, "area"))
    assert mod.Box().area() == 4  # 2 + 2 == 2 * 2: the swap happened, check with another size
    b = mod.Box()
    b.size = 3
    assert b.area() == 6


def test_module_and_class_level_mutants_are_refused(toy):
    mod, path = toy
    assert not swap_in(path, *_codes(path, "module"))
    assert not swap_in(path, *_codes(path, "class"))
    assert mod.LIMIT == 3 and mod.Box.size == 2 and mod.small(2) is True


def test_an_identical_or_foreign_module_is_refused(toy, tmp_path):
    mod, path = toy
    original, _ = _codes(path, "compare")
    assert not swap_in(path, original, original)  # nothing changed: nothing to swap
    other = tmp_path / "elsewhere.py"
    other.write_text(MODULE)
    assert not swap_in(str(other), *_codes(str(other), "compare"))  # no live function comes from that file
    assert mod.small(3) is False


def _record(tmp_path, target: str) -> Coverage:
    out = tmp_path / f"cov-{target}.json"
    code = textwrap.dedent(f"""\
        import sys
        sys.path[:0] = [{str(ROOT / 'scripts')!r}, {str(tmp_path)!r}]
        import pytest
        from mutate_select import Recorder
        rec = Recorder({str(tmp_path / target)!r})
        rec.start()
        rc = pytest.main(["-q", "-p", "no:cacheprovider", {str(tmp_path / 'test_lib.py')!r}], plugins=[rec])
        rec.save({str(out)!r})
        sys.exit(rc)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return Coverage.load(str(out))


def test_recorder_attributes_lines_to_tests_fixtures_and_import(tmp_path):
    (tmp_path / "lib.py").write_text(textwrap.dedent("""\
        CONST = 1 + 1

        def used_by_a():
            return 1

        def used_by_fixture():
            return 2

        def never():
            return 3
    """))
    (tmp_path / "test_lib.py").write_text(textwrap.dedent("""\
        import os
        import pytest
        import lib

        @pytest.fixture(scope="module")
        def shared():
            return lib.used_by_fixture()

        def test_a():
            assert lib.used_by_a() == 1

        def test_b(shared):
            assert shared == 2

        def test_c(shared):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

        def test_d():
            import lazy  # imported by a test: its module-level code still counts as import time
            assert lazy.TABLE == {"k": 2}
    """))
    (tmp_path / "lazy.py").write_text(textwrap.dedent("""\
        def build():
            return {"k": 2}

        class Box:
            size = 3

        TABLE = build()

        def later():
            return TABLE
    """))
    cov = _record(tmp_path, "lib.py")
    a, b, c, d = (f"test_lib.py::{n}" for n in ("test_a", "test_b", "test_c", "test_d"))
    assert cov.tests == [a, b, c, d]
    assert cov.lines[1] == [None]  # module level: import time
    assert cov.select(4, 4) == [a, c]  # test_c forks: it runs for every executed mutant
    assert cov.lines[7] == ["fixture:shared"]
    assert cov.select(7, 7) == [b, c]
    assert cov.select(10, 10) == []
    assert cov.forkers == [c]
    lazy = _record(tmp_path, "lazy.py")  # imported by test_d only
    for line in (1, 2, 4, 5, 7):  # def, build() run by the module body, class body, the call
        assert lazy.lines[line] == [None] and lazy.at_import(line, line) and lazy.select(line, line) is ALL, line
    assert lazy.select(10, 11) == []  # later() never runs



def test_a_warm_session_runs_any_selection_of_its_collected_tests(tmp_path):
    """scripts/mutate_session.py: collected once, each forked child runs its selection with pytest's codes."""
    (tmp_path / "test_w.py").write_text(textwrap.dedent("""\
        import os
        import pytest

        @pytest.fixture(scope="module")
        def shared():
            return 2

        def test_a(shared):
            assert shared == 2

        def test_b():
            assert os.environ.get("W_FAIL") != "b"

        def test_c(shared):
            assert os.environ.get("W_FAIL") != "c"
    """))
    code = textwrap.dedent(f"""\
        import os, sys
        sys.path.insert(0, {str(ROOT / 'scripts')!r})
        from mutate_session import WarmSession
        w = WarmSession.open([{str(tmp_path / 'test_w.py')!r}])
        ids = [it.nodeid for it in w.items]
        def run(sel, fail=""):
            pid = os.fork()
            if pid == 0:
                os.environ["W_FAIL"] = fail
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os._exit(w.run(sel))
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        a, b, c = ids
        print([run([a]), run([c]), run([b, c], fail="c"), run([a, c], fail="b"), run(None, fail="b"),
               run(None), run(["test_w.py::nope"])])
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[0, 0, 1, 0, 1, 0, 4]"
