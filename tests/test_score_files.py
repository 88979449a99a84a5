"""A score file is what its meta says it is (docs/ray.md, "The output file, and `--resume`"):
``--resume`` refuses what would make the file describe rows it does not hold, and the readers
(correlate, search --scores) refuse a damaged file, naming the file, line and field, instead of
reading damage as a proxy's NaN.

Injected defects these tests catch (each run by hand, each made its test fail): a stale meta
kept beside a new file; a resume without a meta file; a row with a missing field kept by a
resume or read by correlate; rows of networks the run does not ask for kept; a resume with
another engine left unrecorded, or recorded by a resume that was refused; pandas' NA words
read as NaN; a gzipped score file not read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zcfast import cli
from zcfast.scoring import read_scores, score_to_file

DS = "ImageNet16-120"  # 16x16 networks: a cell scores in well under a second


def run(out, **kw):
    args = dict(archs="3", proxies="params,synflow", dataset=DS, batch_size=8, engine="loop",
                progress=False, seed=1)
    args.update(kw)
    return score_to_file(out, **args)


def meta_of(out) -> dict:
    return json.loads(Path(str(out) + ".meta.json").read_text())


def test_a_new_file_gets_a_new_meta_even_with_resume(tmp_path):
    old, out = tmp_path / "old.csv", tmp_path / "new.csv"
    run(old)
    Path(str(out) + ".meta.json").write_text(Path(str(old) + ".meta.json").read_text())
    run(out, proxies="params", seed=3, resume=True)  # no rows yet: nothing to resume
    m = meta_of(out)
    assert m["proxies"] == ["params"] and m["seed"] == 3


def test_resume_without_a_meta_file_is_refused(tmp_path):
    out = tmp_path / "s.csv"
    run(out)
    Path(str(out) + ".meta.json").unlink()
    with pytest.raises(ValueError, match=r"s\.csv\.meta\.json is missing"):
        run(out, resume=True)


def test_resume_refuses_a_damaged_row(tmp_path):
    out = tmp_path / "s.csv"
    run(out)
    lines = out.read_text().splitlines(keepends=True)
    good = "".join(lines)
    out.write_text(lines[0] + lines[1].rsplit(",", 1)[0] + "\n" + "".join(lines[2:]))
    with pytest.raises(ValueError, match=r"cannot resume .*s\.csv: line 2 has 3 fields, the header 4"):
        run(out, resume=True)
    out.write_text(good.replace(lines[2].rsplit(",", 1)[1], "abc\n"))
    with pytest.raises(ValueError, match=r"line 3, column 'synflow': 'abc' is not a number"):
        run(out, resume=True)
    # rows are checked in file order: the bad number on line 3 is named before the damaged line 4
    out.write_text(good.replace(lines[2].rsplit(",", 1)[1], "abc\n").replace(
        lines[3], lines[3].rsplit(",", 1)[0] + "\n"))
    with pytest.raises(ValueError, match=r"line 3, column 'synflow': 'abc' is not a number"):
        run(out, resume=True)
    # a blank line is skipped, as the readers skip it: the resume keeps every row, scores nothing
    out.write_text(lines[0] + lines[1] + "\n" + "".join(lines[2:]))
    assert run(out, resume=True)["scored"] == 0


def test_resume_refuses_networks_the_run_does_not_ask_for(tmp_path):
    archs, out = tmp_path / "a.txt", tmp_path / "s.csv"
    archs.write_text("0\n1\n2\n")
    run(out, archs=str(archs))
    archs.write_text("0\n1\n2\n3\n")  # more networks: the file is continued
    assert run(out, archs=str(archs), resume=True)["scored"] == 1
    archs.write_text("3\n4\n")  # others: the file would hold two runs' networks
    with pytest.raises(ValueError, match=r"holds 3 network\(s\) that this run's --archs does not "
                                         r"ask for \(index 0\)"):
        run(out, archs=str(archs), resume=True)
    assert len(read_scores(out)[0]) == 4  # nothing written


def test_resume_with_another_engine_is_recorded(tmp_path):
    archs, out = tmp_path / "a.txt", tmp_path / "s.csv"
    archs.write_text("5\n6\n")
    run(out, archs=str(archs), engine="packed")
    archs.write_text("5\n6\n7\n")
    archs.write_text("8\n")  # refused (other networks): the meta is left as it was
    with pytest.raises(ValueError, match="does not ask for"):
        run(out, archs=str(archs), engine="loop", resume=True)
    assert meta_of(out)["engine"] == "packed"
    archs.write_text("5\n6\n7\n")
    run(out, archs=str(archs), engine="loop", resume=True)
    assert meta_of(out)["engine"] == "packed + loop"


def test_a_header_alone_is_no_rows(tmp_path):
    """A run killed before its first chunk leaves the header only: --resume starts afresh, with
    this run's header and meta (the old meta may be missing or of other settings)."""
    out = tmp_path / "s.csv"
    out.write_text("index,arch,grad_norm\n")
    run(out, resume=True)
    assert out.read_text().splitlines()[0] == "index,arch,params,synflow"
    assert meta_of(out)["proxies"] == ["params", "synflow"] and len(read_scores(out)[0]) == 3


def test_readers_refuse_a_damaged_file(tmp_path, capsys):
    out = tmp_path / "s.csv"
    run(out, archs="4")
    text, meta = out.read_text(), Path(str(out) + ".meta.json").read_text()

    def correlate(body, meta_text=meta):
        f = tmp_path / "d.csv"
        f.write_text(body)
        Path(str(f) + ".meta.json").write_text(meta_text)
        rc = cli.main(["correlate", str(f)])
        return rc, capsys.readouterr()

    lines = text.splitlines(keepends=True)
    rc, r = correlate(lines[0] + lines[1] + lines[2].rsplit(",", 1)[0] + "\n" + "".join(lines[3:]))
    assert rc == 2 and "d.csv: line 3 has 3 fields, the header 4 (a damaged row)" in r.err
    rc, r = correlate(text.replace(lines[4].rsplit(",", 1)[1], "x1\n"))
    assert rc == 2 and "line 5, column 'synflow': 'x1' is not a number" in r.err
    rc, r = correlate(text.replace(lines[4].rsplit(",", 1)[1], "NA\n"))  # not the writer's NaN
    assert rc == 2 and "line 5, column 'synflow': 'NA' is not a number" in r.err
    rc, r = correlate("")
    assert rc == 2 and "d.csv is empty" in r.err
    rc, r = correlate(text, meta_text="{not json")
    assert rc == 2 and "d.csv.meta.json is not a valid meta file (JSON)" in r.err
    # a torn last line (a run still writing) is left out, and said so
    with pytest.warns(UserWarning, match="d.csv: its last line is incomplete"):
        rc, r = correlate(text[: len(text) - len(lines[-1]) // 2])
    assert rc == 0
    assert "| params | 3 |" in r.out


def test_bad_dataset_data_and_target_are_named(tmp_path, capsys):
    out = tmp_path / "s.csv"
    run(out, archs="2", proxies="params")
    assert cli.main(["correlate", str(out), "--dataset", "wikitext2"]) == 2
    assert "NB201 has no wikitext2 networks" in capsys.readouterr().err
    assert cli.main(["correlate", str(out), "--target", "arch"]) == 2
    assert "unknown target 'arch' for nb201: expected one of test_acc" in capsys.readouterr().err
    bad = tmp_path / "o.csv"
    assert cli.main(["score", "--proxies", "params", "--archs", "2", "--data", "x.txt",
                     "--out", str(bad)]) == 2
    assert "--data x.txt: space nb201 reads no benchmark file" in capsys.readouterr().err
    assert not bad.exists()


def test_a_gzipped_score_file_is_read(tmp_path):
    """bench/data bundles score files as .csv.gz (with their meta): the readers unpack them."""
    import gzip

    out = tmp_path / "s.csv"
    run(out, archs="3")
    gz = tmp_path / "s.csv.gz"
    gz.write_bytes(gzip.compress(out.read_bytes()))
    Path(str(gz) + ".meta.json").write_text(Path(str(out) + ".meta.json").read_text())
    a, b = read_scores(out)[0], read_scores(gz)[0]
    assert a.equals(b) and len(a) == 3
