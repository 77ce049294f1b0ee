#!/usr/bin/env bash
# Regenerate results/bad-inputs.md, what each user mistake prints (one line, exit 2) and what a full disk keeps:
#
#   nice -n 15 bash results/bad-inputs.sh        # from anywhere, with `tempbench` on PATH (PATH=.venv/bin:$PATH)
#
# Every command runs for real, in its own process, in a scratch folder (paths below are relative to it). As root the
# script mounts tiny tmpfs file systems for a real read-only folder and a real full disk (unmounted at the end);
# without root those rows say so. Two 1-epoch trainings on digits: a few minutes on 2 busy cores.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
REPORT="$REPO/results/bad-inputs.md"
TB=${TEMPBENCH:-tempbench}
command -v "$TB" >/dev/null || { echo "no $TB on PATH: pip install -e . (or PATH=.venv/bin:\$PATH)" >&2; exit 1; }
SCRATCH=$(mktemp -d)
MOUNTS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
cd "$SCRATCH" || exit 1
QUICK=(--epochs 1 --no-tracking --set progress=false --set device=cpu)
ROWS=()

# cell TEXT: TEXT for a Markdown table cell (| escaped, lines joined with <br>)
cell() { sed -e 's/|/\\|/g' | awk 'NR > 1 { printf "<br>" } { printf "%s", $0 }'; }

# case NAME COMMAND...: run COMMAND, add a row: NAME | the command as typed | stderr | exit code
case_row() {
    local name=$1
    shift
    "$@" >stdout.txt 2>stderr.txt
    local code=$?
    local typed=${SHOW:-${*/#$TB/tempbench}}
    ROWS+=("| $name | \`$typed\` | $(cell <stderr.txt) | $code |")
}

# mount_tmpfs DIR OPTIONS: a tmpfs at DIR (root only); 1 when it cannot
mount_tmpfs() {
    mkdir -p "$1" && mount -t tmpfs -o "$2" tmpfs "$1" 2>/dev/null && MOUNTS+=("$SCRATCH/$1")
}

# ---- inputs --------------------------------------------------------------------------------------------------------
echo "not a folder" >afile
mkdir -p truncated cut latin corrupt
printf 'run_id,strategy,dataset,seed,linear_top1,history\nfixed-digits-s0-abc,fixed,digits,0,81.5,"[]"\n' >good.csv
{ cat good.csv; printf 'fixed-digits-s1-abc,fixed,dig'; } >truncated/runs.csv
{ cat good.csv; printf 'fixed-digits-s1-abc,fixed,digits,1,80.0,"[{""lo'; } >cut/runs.csv
{ cat good.csv; printf 'fixed-digits-s1-abc,fix\xe9,digits,1,80.0,\n'; } >latin/runs.csv
{ head -1 good.csv; printf 'fixed-digits-s0-abc,fixed\n'; } >corrupt/runs.csv
printf 'name = "tiny"\ndatasets = ["digits"]\nstrategies = ["fixed"]\nseeds = 1\n[run]\nepochs = 1\n' >tiny.toml
printf 'datasets = ["digits"]\nstrategies = [fixed]\n' >syntax.toml
printf 'datasets = ["digits"]\nstrategies = [\n' >cut.toml
iconv -f utf-8 -t utf-16 tiny.toml >utf16.toml
{ printf '# r\xe9glages\n'; cat tiny.toml; } >latin1.toml
: >empty.toml
READ_ONLY=yes FULL=yes TINY=yes
mount_tmpfs ro size=64k,ro || READ_ONLY=""
if mount_tmpfs full size=64k; then dd if=/dev/zero of=full/fill bs=4k count=64 2>/dev/null; else FULL=""; fi
mount_tmpfs tiny size=4k || TINY=""  # room for the 4 KiB folder probe, not for a checkpoint or a row

# ---- every user mistake: one line, exit 2 --------------------------------------------------------------------------
T=(train --strategy fixed --dataset digits "${QUICK[@]}")
case_row "hyperparameter not a number" "$TB" train --strategy isogclr --dataset digits --set rho=abc
case_row "hyperparameter given two values" "$TB" "${T[@]}" --set tau=0.1,0.2
case_row "hyperparameter a bool" "$TB" "${T[@]}" --set tau=true
case_row "hyperparameter choice misspelt" "$TB" train --strategy sogclr --dataset digits --set first_visit=sampel
case_row "run setting not a number" "$TB" "${T[@]}" --set lr=abc
case_row "--out names a file" "$TB" "${T[@]}" --out afile
case_row "--out under a file" "$TB" "${T[@]}" --out afile/sub
if [ -n "$READ_ONLY" ]; then
    case_row "--out on a read-only file system" "$TB" "${T[@]}" --out ro/out
else ROWS+=("| --out on a read-only file system | (needs root to mount a read-only tmpfs: not run) | | |"); fi
if [ -n "$FULL" ]; then
    case_row "--out on a full disk" "$TB" "${T[@]}" --out full/out
else ROWS+=("| --out on a full disk | (needs root to mount a tmpfs: not run) | | |"); fi
case_row "results file truncated" "$TB" leaderboard truncated/runs.csv --no-figures
case_row "results file cut inside a quoted cell" "$TB" leaderboard cut/runs.csv --no-figures
case_row "results file not UTF-8" "$TB" leaderboard latin/runs.csv --no-figures
case_row "suite into a corrupt results file" "$TB" run --suite tiny.toml --out corrupt --no-tracking
case_row "train into a corrupt results file" "$TB" "${T[@]}" --out corrupt
case_row "suite with a TOML syntax error" "$TB" run --suite syntax.toml --no-tracking
case_row "suite cut short" "$TB" run --suite cut.toml --no-tracking
case_row "suite in UTF-16" "$TB" run --suite utf16.toml --no-tracking
case_row "suite in Latin-1" "$TB" run --suite latin1.toml --no-tracking
case_row "suite empty" "$TB" run --suite empty.toml --no-tracking
# the text extra is installed here: hide its module from this one process, as an environment without it would
PY=$(head -1 "$(command -v "$TB")" | sed 's/^#!//')
SHOW="tempbench train --strategy fixed --dataset flickr8k --no-tracking" case_row \
    "missing extra (text: sentence-transformers hidden)" "$PY" -c "import sys; sys.modules['sentence_transformers'] = None
from tempbench.cli import main; sys.exit(main(sys.argv[1:]))" train --strategy fixed --dataset flickr8k --no-tracking

# ---- nothing trained is lost ---------------------------------------------------------------------------------------
LOST=()
# what_printed: what stdout.txt holds, in a few words
what_printed() {
    python3 - <<'EOF'
import json
text = open("stdout.txt").read()
try:
    data = json.loads(text)
except ValueError:
    print("text" if text.strip() else "nothing")
else:
    if isinstance(data, dict):
        print(f"the row as JSON (run_id {data['run_id']}, linear_top1 {data['linear_top1']:.2f})")
    else:
        print(f"the leaderboard as JSON ({len(data)} cells)")
EOF
}

lost_row() {  # like case_row, with what stdout holds
    local name=$1
    shift
    "$@" >stdout.txt 2>stderr.txt
    local code=$?
    local typed=${*/#$TB/tempbench}
    LOST+=("| $name | \`$typed\` | $(cell <stderr.txt) | $(what_printed) | $code |")
}
lost_row "a finished run" "$TB" "${T[@]}" --out ok --json
CKPT=$(ls ok/checkpoints)
lost_row "resuming the finished run" "$TB" "${T[@]}" --out ok --resume "ok/checkpoints/$CKPT" --json
echo "rows in ok/runs.csv after both: $(python3 -c 'import csv; print(sum(1 for _ in csv.DictReader(open("ok/runs.csv"))))')" >rows.txt
if [ -n "$TINY" ]; then
    lost_row "a disk that fills up during the run" "$TB" "${T[@]}" --out tiny/out --json
    echo "files left in tiny/out: $(cd tiny/out && find . -type f | sort | tr '\n' ' ')" >>rows.txt
else LOST+=("| a disk that fills up during the run | (needs root to mount a 4 KiB tmpfs: not run) | | | |"); fi
mkdir -p history
python3 - <<'EOF'
import csv
rows = list(csv.DictReader(open("ok/runs.csv", newline="")))
rows[0]["history"] = rows[0]["history"][:40]  # a history cell cut short
with open("history/runs.csv", "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
EOF
lost_row "a corrupt history cell" "$TB" leaderboard history/runs.csv --no-figures --json

# ---- the report ----------------------------------------------------------------------------------------------------
{
    echo "# Bad inputs: one line each, and nothing trained is lost"
    echo
    echo "Regenerate: \`nice -n 15 bash results/bad-inputs.sh\` (as root for the read-only and full-disk rows). Every"
    echo "command ran in its own process in a scratch folder; the paths are relative to it. Generated $(date -u +%Y-%m-%d)"
    echo "at commit $(git -C "$REPO" rev-parse --short HEAD)."
    echo
    echo "## Every user mistake: one line on stderr, exit code 2"
    echo
    echo "| case | command | stderr (all of it) | exit code |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "## Nothing trained is lost"
    echo
    echo "The full disk is a 4 KiB tmpfs: room for the up-front folder probe, none for the checkpoint or the row."
    echo
    echo "| case | command | stderr (all of it) | stdout | exit code |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s\n' "${LOST[@]}"
    echo
    sed 's/^/- /' rows.txt
} >"$REPORT"
echo "wrote $REPORT"
