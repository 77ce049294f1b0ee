"""Provenance of result rows: the git state of a checkout (commit, dirty, the diff against HEAD and its hash), the
diff kept beside runs.csv, and the check of a results file. Each test works in a git repository of its own; the
expected commits and diffs come from git itself, never from the code under test."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tempbench.leaderboard import append_row, keep_row, read_rows
from tempbench.provenance import CHECKOUT, GitState, git_commit, git_state, main, read_git_state
from tempbench.util import ArtifactWarning

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]


def git(root: Path, *args: str) -> bytes:
    return subprocess.run([*GIT, *args], cwd=root, capture_output=True, check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit: a text file and a binary one."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "loss.py").write_text("TAU = 0.1\n")
    (root / "weights.bin").write_bytes(bytes(range(256)))
    git(root, "add", "loss.py", "weights.bin")
    git(root, "commit", "-q", "-m", "first")
    return root


def dirty(root: Path) -> bytes:
    """Change both tracked files; the diff against HEAD as git writes it."""
    (root / "loss.py").write_text("TAU = 0.07\n")
    (root / "weights.bin").write_bytes(bytes(range(255, -1, -1)))
    return git(root, "diff", "HEAD", "--binary")


def short_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def test_a_clean_checkout_has_its_commit_and_no_diff(repo: Path) -> None:
    (repo / "notes.txt").write_text("untracked files do not make a tree dirty\n")
    head = git(repo, "rev-parse", "HEAD").decode().strip()
    assert read_git_state(repo) == GitState(commit=head, dirty=False, diff_hash="", diff=b"")


def test_a_changed_tracked_file_makes_it_dirty_with_the_diffs_hash(repo: Path) -> None:
    diff = dirty(repo)
    state = read_git_state(repo)
    assert state.commit == git(repo, "rev-parse", "HEAD").decode().strip() and state.dirty
    assert state.diff == diff and b"GIT binary patch" in diff
    assert state.diff_hash == short_sha256(diff) and len(state.diff_hash) == 12
    git(repo, "commit", "-q", "-am", "second")
    assert read_git_state(repo) == GitState(commit=git(repo, "rev-parse", "HEAD").decode().strip())


def test_rows_appended_to_committed_results_do_not_make_the_tree_dirty(repo: Path) -> None:
    (repo / "results" / "quick").mkdir(parents=True)
    (repo / "results" / "quick" / "runs.csv").write_text("run_id\na\n")
    git(repo, "add", "results")
    git(repo, "commit", "-q", "-m", "rows")
    (repo / "results" / "quick" / "runs.csv").write_text("run_id\na\nb\n")  # a sweep appended a row
    assert not read_git_state(repo).dirty
    (repo / "loss.py").write_text("TAU = 0.5\n")  # the code changed: dirty, and the diff is the code's alone
    state = read_git_state(repo)
    assert state.dirty and b"loss.py" in state.diff and b"runs.csv" not in state.diff


@pytest.mark.parametrize("where", ["not a repository", "no such folder", "no commit yet"])
def test_outside_a_checkout_the_state_is_empty(tmp_path: Path, where: str) -> None:
    root = tmp_path / "plain"
    if where != "no such folder":
        root.mkdir()
    if where == "no commit yet":
        git(root, "init", "-q")
    assert read_git_state(root) == GitState()


def test_git_commit_is_the_checkouts_sha_with_plus_dirty_when_it_has_changes() -> None:
    git_state.cache_clear()  # read the checkout now, as git below does
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True)
    changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                              ":(exclude)results"], cwd=CHECKOUT, capture_output=True, text=True)
    expected = head.stdout.strip() + ("+dirty" if changes.stdout.strip() else "") if head.returncode == 0 else ""
    assert git_commit() == expected


def row_of(state: GitState, run: str) -> dict[str, object]:
    return {"run_id": run, "git_commit": state.commit + "+dirty", "git_dirty": state.dirty,
            "git_diff_hash": state.diff_hash, "linear_top1": 50.0}


def test_rows_of_one_dirty_tree_keep_its_diff_once_and_git_apply_takes_it(repo: Path, tmp_path: Path) -> None:
    diff = dirty(repo)
    state = read_git_state(repo)
    runs = tmp_path / "out" / "runs.csv"
    append_row(runs, row_of(state, "a"))
    kept = runs.parent / "diffs" / f"{short_sha256(diff)}.diff"
    assert kept.read_bytes() == diff
    inode = kept.stat().st_ino
    append_row(runs, row_of(state, "b"))
    assert kept.stat().st_ino == inode  # not written again (an atomic rewrite would be a new file)
    assert [p.name for p in kept.parent.iterdir()] == [kept.name]  # nor a temporary file left behind
    rows = read_rows(runs)
    assert rows["run_id"].tolist() == ["a", "b"] and rows["git_dirty"].tolist() == [True, True]
    assert rows["git_diff_hash"].tolist() == [short_sha256(diff)] * 2
    git(repo, "checkout", "--", ".")  # back to the commit: commit + diff rebuild the tree that ran
    git(repo, "apply", str(kept))
    assert (repo / "loss.py").read_text() == "TAU = 0.07\n"
    assert (repo / "weights.bin").read_bytes() == bytes(range(255, -1, -1))


def test_a_clean_row_writes_no_diff(repo: Path, tmp_path: Path) -> None:
    append_row(tmp_path / "runs.csv", row_of(read_git_state(repo), "a"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "runs.csv"]


def test_a_diff_that_cannot_be_written_is_a_warning_and_the_row_is_kept(repo: Path, tmp_path: Path) -> None:
    dirty(repo)
    (tmp_path / "diffs").write_text("a file where the diffs folder would go")
    with pytest.warns(ArtifactWarning, match="could not write its tree's diff"):
        kept = keep_row(tmp_path / "runs.csv", row_of(read_git_state(repo), "a"))
    assert kept == tmp_path / "runs.csv" and read_rows(kept)["run_id"].tolist() == ["a"]


def test_a_diff_this_process_never_read_is_a_warning_and_the_row_is_kept(tmp_path: Path) -> None:
    row = {"run_id": "elsewhere", "git_commit": "abc+dirty", "git_dirty": True, "git_diff_hash": "0123456789ab"}
    with pytest.warns(ArtifactWarning, match="not the one this process read"):
        append_row(tmp_path / "runs.csv", row)
    assert read_rows(tmp_path / "runs.csv")["run_id"].tolist() == ["elsewhere"]
    assert not (tmp_path / "diffs").exists()


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_check_counts_clean_and_dirty_rows_and_exits_1_on_a_dirty_one(tmp_path: Path, capsys) -> None:
    (tmp_path / "clean").mkdir()
    (tmp_path / "old").mkdir()
    clean = write_rows(tmp_path / "clean" / "runs.csv", [
        {"run_id": "a", "git_commit": "abc", "git_dirty": "False", "git_diff_hash": ""},
        {"run_id": "b", "git_commit": "abc", "git_dirty": "False", "git_diff_hash": ""}])
    old = write_rows(tmp_path / "old" / "runs.csv", [  # before git_dirty: the '+dirty' suffix says it
        {"run_id": "a", "git_commit": "abc+dirty"}, {"run_id": "b", "git_commit": "abc"},
        {"run_id": "c", "git_commit": ""}])
    assert main(["check", str(clean)]) == 0
    assert capsys.readouterr().out == f"{clean}: 2 rows, 2 clean, 0 dirty\n"
    assert main(["check", str(clean), str(old)]) == 1
    assert capsys.readouterr().out.splitlines()[1] == f"{old}: 3 rows, 1 clean, 1 dirty, 1 without a commit"


def test_check_names_dirty_rows_whose_diff_is_missing(tmp_path: Path, capsys) -> None:
    runs = write_rows(tmp_path / "runs.csv", [
        {"run_id": "a", "git_commit": "abc+dirty", "git_dirty": "True", "git_diff_hash": "0123456789ab"},
        {"run_id": "b", "git_commit": "abc+dirty", "git_dirty": "True", "git_diff_hash": "ba9876543210"}])
    (tmp_path / "diffs").mkdir()
    (tmp_path / "diffs" / "0123456789ab.diff").write_text("diff --git a/x b/x\n")
    assert main(["check", str(runs)]) == 1
    assert capsys.readouterr().out == f"{runs}: 2 rows, 0 clean, 2 dirty (1 of them without their diff in diffs/)\n"


def test_check_exits_2_on_a_file_it_cannot_read(tmp_path: Path, capsys) -> None:
    assert main(["check", str(tmp_path / "missing.csv")]) == 2
    assert "no results file" in capsys.readouterr().err
    bad = write_rows(tmp_path / "runs.csv", [{"run_id": "a", "git_commit": "abc", "git_dirty": "maybe"}])
    assert main(["check", str(bad)]) == 2
    assert "git_dirty is 'maybe'" in capsys.readouterr().err


def test_python_m_tempbench_provenance_check_is_the_command(tmp_path: Path) -> None:
    runs = write_rows(tmp_path / "runs.csv", [{"run_id": "a", "git_commit": "abc+dirty"}])
    done = subprocess.run([sys.executable, "-m", "tempbench.provenance", "check", str(runs)], capture_output=True,
                          text=True)
    assert (done.returncode, done.stdout) == (1, f"{runs}: 1 row, 0 clean, 1 dirty\n")
