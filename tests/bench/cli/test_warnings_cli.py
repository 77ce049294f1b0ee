"""tempbench's own warnings (few visits, a file not written) reach the user as one line naming the command; other
libraries' warnings are printed as Python prints them."""

import subprocess
import sys

from tempbench.cli import one_line_warning
from tempbench.util import FewVisitsWarning


def test_tempbench_warnings_are_one_line_and_others_fall_through():
    fallen = []
    fmt = one_line_warning("tempbench train", lambda *args: fallen.append(args) or "theirs\n")
    assert fmt(FewVisitsWarning("isogclr: too few"), FewVisitsWarning, "/somewhere/row.py", 39) == (
        "tempbench train: warning: isogclr: too few\n")
    assert fmt(UserWarning("a library's"), UserWarning, "/lib/x.py", 1) == "theirs\n"
    assert [args[1] for args in fallen] == [UserWarning]


def test_a_short_per_sample_run_says_so_in_one_line(tmp_path):
    """The real command in its own process (in-process, pytest records the warning instead of printing it)."""
    done = subprocess.run([sys.executable, "-m", "tempbench", "train", "--strategy", "isogclr", "--dataset",
                           "digits-lt", "--epochs", "1", "--set", "progress=false", "--set", "device=cpu",
                           "--no-tracking", "--out", str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "updated 0.9 times" in line or "visit_fields" in line]
    assert lines == ["tempbench train: warning: isogclr: its 588 state entries were updated 0.9 times on average "
                     "(fewest 0); per-sample state (u_i, and τ_i where learned) cannot have settled in under 10 "
                     "updates: train longer (for image–caption data, epoch_by='pairs' visits every pair each epoch)"]
