#!/usr/bin/env bash
# Cluster execution for real: start a single-node SLURM, run a four-participant dataset (one
# participant's image truncated, so its job fails) as a bids-dl-slurm job array plus the
# dependent group job, and require: outputs identical to a local run, the failure in the logs
# and in the group report, the other participants complete. Then one participant through
# Nipype's own SLURM plugin (every node a job), identical too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/slurm-cluster.sh start
export SLURM_CONF="${SLURM_STATE:-/tmp/bids-dl-slurm}/slurm.conf"
scratch=$(mktemp -d /tmp/bids-dl-slurm-ci.XXXXXX)
trap 'bash scripts/slurm-cluster.sh stop; rm -rf "$scratch"' EXIT

bids-dl-demo "$scratch/demo" >/dev/null
data="$scratch/bids"
mkdir -p "$data"/sub-0{1,2,3,4}/anat
cp "$scratch/demo/dataset_description.json" "$data/"
cp "$scratch/demo/sub-01/anat/sub-01_T1w.nii.gz" "$data/sub-01/anat/sub-01_T1w.nii.gz"
cp "$scratch/demo/sub-02/ses-2/anat/sub-02_ses-2_FLAIR.nii.gz" "$data/sub-02/anat/sub-02_FLAIR.nii.gz"
cp "$scratch/demo/sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz" "$data/sub-03/anat/sub-03_T1w.nii.gz"
head -c 200000 "$scratch/demo/sub-01/anat/sub-01_T2w.nii.gz" > "$data/sub-04/anat/sub-04_T2w.nii.gz"

wait_for_queue() {
  local deadline=$(( $(date +%s) + 900 ))
  while [ -n "$(squeue -h)" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "SLURM queue not empty after 15 min" >&2; squeue >&2; exit 1; }
    sleep 2
  done
}

tic=$(date +%s)
bids-dl-slurm "$data" "$scratch/slurm-out" -w "$scratch/slurm-work" --cpus-per-task 1 --mem 2G --time 00:20:00 --submit
wait_for_queue
echo "SLURM array of 4 + group job: $(( $(date +%s) - tic )) s"

tic=$(date +%s)
status=0
bids-dl "$data" "$scratch/local-out" participant -w "$scratch/local-work" --nprocs 2 || status=$?
[ "$status" -eq 1 ] || { echo "local run: expected exit 1 (sub-04 fails), got $status" >&2; exit 1; }
bids-dl "$data" "$scratch/local-out" group
echo "local run of the same: $(( $(date +%s) - tic )) s"

out="$scratch/slurm-out"
for label in 01 02 03; do
  ls "$out/sub-$label/anat/"*desc-brain_mask.nii.gz >/dev/null
  grep -q "Failed" "$out/sub-$label.html" && { echo "sub-$label report shows a failure" >&2; exit 1; }
done
[ ! -e "$out/sub-04/anat" ] || { echo "sub-04 has outputs" >&2; exit 1; }
grep -l "sub-04_T2w.nii.gz" "$out"/logs/crash-*.txt >/dev/null
grep -q "Failed participants (1)" "$out/group/report.html"
grep -q "sub-04" "$out/group/report.html"
grep -q "sub-04 FAILED" "$scratch"/slurm-work/slurm/logs/participant_*_4.log
grep -q "sub-04: its participant-level run failed" "$scratch"/slurm-work/slurm/logs/group_*.log
python3 scripts/compare_derivatives.py "$out" "$scratch/local-out"

tic=$(date +%s)
bids-dl "$data" "$scratch/plugin-out" participant --participant-label 01 -w "$scratch/plugin-work" \
  --plugin SLURM --plugin-args '{"sbatch_args": "--mem=2G --cpus-per-task=1"}'
echo "Nipype SLURM plugin, one participant: $(( $(date +%s) - tic )) s"
python3 scripts/compare_derivatives.py "$scratch/plugin-out" "$scratch/local-out" --participants 01
