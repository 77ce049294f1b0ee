"""tempbench's own warnings (few visits, a file not written) reach the user as one line naming the command; other
libraries' warnings are printed as Python prints them."""

import warnings

import pytest

from tempbench.cli import main, one_line_warning
from tempbench.util import FewVisitsWarning


def test_tempbench_warnings_are_one_line_and_others_fall_through(capsys):
    fallen = []
    show = one_line_warning("tempbench train", lambda *args: fallen.append(args))
    show(FewVisitsWarning("isogclr: too few"), FewVisitsWarning, "/somewhere/row.py", 39)
    show(UserWarning("a library's"), UserWarning, "/lib/x.py", 1)
    assert capsys.readouterr().err == "tempbench train: warning: isogclr: too few\n"
    assert [args[1] for args in fallen] == [UserWarning]


@pytest.mark.filterwarnings("always::tempbench.util.FewVisitsWarning")
def test_a_short_per_sample_run_says_so_in_one_line(tmp_path, capsys):
    shown = warnings.showwarning
    code = main(["train", "--strategy", "isogclr", "--dataset", "digits-lt", "--epochs", "1", "--set", "progress=false",
                 "--set", "device=cpu", "--no-tracking", "--out", str(tmp_path)])
    assert code == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "FewVisits" in line or "updated 0.9 times" in line]
    assert lines == ["tempbench train: warning: isogclr: its 588 state entries were updated 0.9 times on average "
                     "(fewest 0); a per-sample τ cannot have individualised in under 10 updates: train longer (for "
                     "image–caption data, epoch_by='pairs' visits every pair each epoch)"]
    assert warnings.showwarning is shown  # restored after the command
