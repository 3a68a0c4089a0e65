"""`genbench compare`: flags an injected regression, not a same-seed rerun; exit codes; JUnit XML."""

import json
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from genbench.cli import main
from genbench.results.compare import EXIT_NOT_COMPARABLE, EXIT_OK, EXIT_REGRESSION, Tolerance, compare_frames, load_tolerances, to_junit

PROTO = json.dumps({"extractor": "classifier:fashion-mnist", "n_fake": 1000, "n_real": 1000, "seed": 0})
TIMING = json.dumps({"timing": True, "batch_size": 256, "hardware": "CPU test [avx2] x2; torch 2", "torch_threads": 1})


def _rows(fd_gan=20.0, fd_vae=30.0, sps_gan=1000.0, seeds=(0, 1, 2), n_fake=1000, jitter=0.3):
    rows = []
    proto = json.loads(PROTO) | {"n_fake": n_fake}
    for s in seeds:
        for model, fd, sps in (("gan", fd_gan, sps_gan), ("vae", fd_vae, 500.0)):
            v = fd + jitter * (s - 1)
            rows.append(dict(dataset="fashion-mnist", model=model, family=model, seed=s, metric="fd", variant="",
                             value=v, ci_low=v - 0.5, ci_high=v + 0.5, unit="", higher_is_better=False,
                             protocol=json.dumps(proto | {"seed": s})))
            rows.append(dict(dataset="fashion-mnist", model=model, family=model, seed=s, metric="samples_per_s",
                             variant="", value=sps, ci_low=None, ci_high=None, unit="samples/s",
                             higher_is_better=True, protocol=TIMING))
    return pd.DataFrame(rows)


def _write(tmp_path, name, frame):
    d = tmp_path / name
    d.mkdir()
    frame.to_csv(d / "results.csv", index=False)
    return d


def test_same_seed_rerun_is_not_a_regression():
    cmp = compare_frames(_rows(), _rows())
    assert cmp.exit_code == EXIT_OK
    assert {r.verdict for r in cmp.rows} == {"unchanged"}


def test_small_change_within_noise_is_not_a_regression():
    # FD worse by 0.4 with CI half-widths 0.5 and seed spread: within noise, and within the 5% tolerance.
    cmp = compare_frames(_rows(), _rows(fd_gan=20.4))
    assert cmp.exit_code == EXIT_OK
    (row,) = [r for r in cmp.rows if r.model == "gan" and r.metric == "fd"]
    assert row.verdict in ("within noise", "unchanged")


def test_injected_regression_is_flagged_and_improvement_is_not():
    cmp = compare_frames(_rows(), _rows(fd_gan=26.0, fd_vae=20.0))
    assert cmp.exit_code == EXIT_REGRESSION
    verdicts = {(r.model, r.metric): r.verdict for r in cmp.rows}
    assert verdicts[("gan", "fd")] == "regressed"
    assert verdicts[("vae", "fd")] == "improved"
    assert len(cmp.regressions) == 1


def test_noise_not_percentage_decides():
    # A 10% FD change is beyond the 5% tolerance but inside very wide CIs: not a regression.
    noisy = _rows(jitter=0.0)
    noisy["ci_low"] = noisy["value"] - 15
    noisy["ci_high"] = noisy["value"] + 15
    worse = noisy.copy()
    worse.loc[(worse.model == "gan") & (worse.metric == "fd"), "value"] += 2.0
    cmp = compare_frames(noisy, worse)
    (row,) = [r for r in cmp.rows if r.model == "gan" and r.metric == "fd"]
    assert row.verdict == "within noise" and cmp.exit_code == EXIT_OK


def test_timing_uses_relative_tolerance():
    cmp = compare_frames(_rows(), _rows(sps_gan=600.0))  # -40% < -30% tolerance
    (row,) = [r for r in cmp.rows if r.model == "gan" and r.metric == "samples_per_s"]
    assert row.verdict == "regressed"
    cmp = compare_frames(_rows(), _rows(sps_gan=800.0))  # -20%
    (row,) = [r for r in cmp.rows if r.model == "gan" and r.metric == "samples_per_s"]
    assert row.verdict == "unchanged"


def test_different_sample_count_is_not_comparable():
    cmp = compare_frames(_rows(), _rows(n_fake=500))
    assert cmp.exit_code == EXIT_NOT_COMPARABLE
    assert any("sample count" in p and "n_fake" in p for p in cmp.problems)


def test_different_dataset_is_not_comparable():
    other = _rows()
    other["dataset"] = "mnist"
    cmp = compare_frames(_rows(), other)
    assert cmp.exit_code == EXIT_NOT_COMPARABLE
    assert "no dataset in common" in cmp.problems[0]


def test_tolerance_parsing_and_override(tmp_path):
    assert Tolerance.parse("5%").allowed(40.0) == pytest.approx(2.0)
    assert Tolerance.parse("-10%").allowed(100.0) == pytest.approx(10.0)
    assert Tolerance.parse(0.02).allowed(3.0) == pytest.approx(0.02)
    f = tmp_path / "tol.toml"
    f.write_text('[tolerances]\nfd = "50%"\n')
    assert load_tolerances(f)["fd"].amount == pytest.approx(0.5)
    bad = tmp_path / "bad.toml"
    bad.write_text('[tolerances]\nfd = "lots"\n')
    with pytest.raises(Exception, match="fd"):
        load_tolerances(bad)


def test_junit_xml_counts_failures():
    cmp = compare_frames(_rows(), _rows(fd_gan=26.0, sps_gan=100.0))
    root = ET.fromstring(to_junit(cmp))
    assert root.tag == "testsuite"
    assert int(root.get("failures")) == 2
    assert len(root.findall(".//failure")) == 2
    assert int(root.get("tests")) == len(root.findall("testcase"))


def test_cli_exit_codes_and_files(tmp_path, capsys):
    base = _write(tmp_path, "base", _rows())
    same = _write(tmp_path, "same", _rows())
    bad = _write(tmp_path, "bad", _rows(fd_gan=26.0))
    other = _write(tmp_path, "other", _rows(n_fake=500))
    assert main(["compare", str(base), str(same)]) == 0
    junit = tmp_path / "junit.xml"
    assert main(["compare", str(base), str(bad), "--junit", str(junit)]) == 1
    assert "**regressed**" in capsys.readouterr().out
    assert int(ET.parse(junit).getroot().get("failures")) == 1
    assert main(["compare", str(base), str(other)]) == 2
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2  # clear error, not a traceback
    assert "does not exist" in capsys.readouterr().err


def test_infinite_values():
    base = _rows()
    inf_row = dict(dataset="fashion-mnist", model="gan", family="gan", seed=0, metric="mode_kl", variant="",
                   value=float("inf"), ci_low=None, ci_high=None, unit="nats", higher_is_better=False, protocol="{}")
    a = pd.concat([base, pd.DataFrame([inf_row])], ignore_index=True)
    cmp = compare_frames(a, a.copy())
    (row,) = [r for r in cmp.rows if r.metric == "mode_kl"]
    assert row.verdict == "unchanged" and cmp.exit_code == EXIT_OK
    b = pd.concat([base, pd.DataFrame([inf_row | {"value": 0.5}])], ignore_index=True)
    assert [r for r in compare_frames(a, b).rows if r.metric == "mode_kl"][0].verdict == "improved"
    assert [r for r in compare_frames(b, a).rows if r.metric == "mode_kl"][0].verdict == "regressed"


def test_no_timing_leaves_timing_metrics_out():
    cmp = compare_frames(_rows(), _rows(sps_gan=10.0), timing=False)
    assert cmp.exit_code == EXIT_OK
    assert {r.metric for r in cmp.rows} == {"fd"}


def _store_with_inf(d):
    """A real run directory whose store holds an infinite mode_kl (as a collapsed model gets) beside finite FDs."""
    from genbench.results.store import ResultsStore

    with ResultsStore(d, create=True) as st:
        st.begin_run("r1", suite_name="t")
        for seed in (0, 1):
            job = f"ring8/gan/seed{seed}"
            st.add_job(job, run_id="r1", dataset="ring8", model="gan", family="gan", seed=seed, budget="smoke",
                       config={})
            st.start_job(job, "r1")
            st.record_job(job, [
                dict(name="fd", value=1.5 + seed, ci_low=1.0, ci_high=2.0 + seed, unit="", higher_is_better=False,
                     protocol={"n_fake": 200}),
                dict(name="mode_kl", value=float("inf"), ci_low=float("-inf"), ci_high=float("inf"), unit="nats",
                     higher_is_better=False, protocol={"n_fake": 200}),
            ])
        st.export()
    return d


def test_run_compared_with_its_own_results_json_gives_exit_0(tmp_path, capsys):
    d = _store_with_inf(tmp_path / "run")
    blob = json.loads((d / "results.json").read_text())
    assert {m["value"] for m in blob["metrics"] if m["metric"] == "mode_kl"} == {"inf"}
    assert main(["compare", str(d), str(d / "results.json")]) == EXIT_OK, capsys.readouterr().out
    assert main(["compare", str(d), str(d / "results.csv")]) == EXIT_OK
    assert main(["compare", str(d / "results.json"), str(d / "results.csv")]) == EXIT_OK
    from genbench.results.compare import load_results

    f = load_results(d / "results.json")
    assert (f.loc[f["metric"] == "mode_kl", "value"] == float("inf")).all()
    assert (f.loc[f["metric"] == "mode_kl", "ci_low"] == float("-inf")).all()


def _unreadable_inputs(tmp_path) -> dict:
    import sqlite3

    files = {
        "malformed.json": b'{"metrics": [',
        "string.json": b'"hello"',
        "number.json": b"42",
        "object.json": b'{"runs": []}',
        "list_of_numbers.json": b"[1, 2]",
        "latin1.json": '{"metrics": [{"model": "caf\u00e9"}]}'.encode("latin-1"),
        "binary.csv": bytes(range(256)) * 4,
        "empty.csv": b"",
        "blank.csv": b"\n\n",
        "wrong_columns.csv": b"a,b\n1,2\n",
        "not_sqlite.db": b"this is not a database at all" * 10,
        "empty.db": b"",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    paths["foreign.db"] = foreign
    no_tables = tmp_path / "meta_only.db"
    con = sqlite3.connect(no_tables)
    con.execute("CREATE TABLE meta (key PRIMARY KEY, value)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.commit()
    con.close()
    paths["meta_only.db"] = no_tables
    return paths


def test_each_unreadable_compare_input_gives_exit_2(tmp_path, capsys):
    good = _write(tmp_path, "good", _rows())
    for name, p in _unreadable_inputs(tmp_path).items():
        for args in ([str(good), str(p)], [str(p), str(good)]):
            code = main(["compare", *args])
            err = capsys.readouterr().err
            assert code == EXIT_NOT_COMPARABLE, (name, code, err)
            assert err.startswith("genbench: error:") and str(p) in err and "Traceback" not in err, (name, err)


def test_compare_does_not_switch_a_foreign_sqlite_file_to_wal(tmp_path):
    import sqlite3

    p = _unreadable_inputs(tmp_path)["foreign.db"]
    before = p.read_bytes()
    assert main(["compare", str(p), str(p)]) == EXIT_NOT_COMPARABLE
    assert p.read_bytes() == before
    assert sqlite3.connect(p).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
