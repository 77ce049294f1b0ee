"""Many runs: sweeps over a suite (`sweep` in one process, `grid_sweep` as a grid study on shared storage),
Optuna sensitivity studies (`sensitivity`: the study and its objective; `samplers`: the design; `workers`: the
budget shared by any number of workers; `storage`: where studies live and how dead workers are found; `repeats`:
seed noise; `report` and `figures`), and the trial function that connects a study to training (`trial`)."""
