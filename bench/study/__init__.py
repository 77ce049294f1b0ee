"""Many runs: sweeps over a suite (`sweep`), Optuna sensitivity studies (`sensitivity`, with their storage and
report), and the trial function that connects a study to training (`trial`)."""
