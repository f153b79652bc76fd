#!/usr/bin/env bash
# Reproduce Table 1 of Bousquet & Rouvier (ICASSP 2023) on the real corpora.
#
#   recipes/voxceleb/run.sh [--stage N] [--stop-stage M]
#
# Stages (each one re-runnable: finished work is skipped, interrupted training resumes):
#   0  prepare VoxCeleb2 dev (training set)
#   1  prepare VoxCeleb1 (Vox1-O/E/H cleaned trial lists)
#   2  prepare MUSAN and RIRS_NOISES (augmentation)
#   3  prepare the other evaluation corpora that are present: SITW, SdSV task 2, TEDx Spanish, DiPCo
#   4  train the four systems (AAM; AAM+LS with weight decay; AAM+LS without; AAM+Jeffreys)
#      from conf/base.yaml and their differences in conf/experiment.yaml, once per seed:
#      `jeffreys experiment conf/experiment.yaml --only-train`, under torchrun on all
#      visible GPUs when there are several
#   5  extract, score (training-mean centring + cosine), metrics with intervals over seeds and
#      speakers, paired comparisons, Table 1, Figs. 1-5 and results.json (the same command)
#
# Paths below; every one can also be set from the environment (VOX2=/data/vox2 ./run.sh).
set -euo pipefail

# ----------------------------------------------------------------------------- paths
VOX2=${VOX2:-/data/VoxCeleb2}          # dev/aac/idXXXXX/VIDEO/NNNNN.m4a
VOX1=${VOX1:-/data/VoxCeleb1}          # dev/wav, test/wav, veri_test2.txt, list_test_all2.txt, list_test_hard2.txt
MUSAN=${MUSAN:-/data/musan}            # music/ noise/ speech/
RIRS=${RIRS:-/data/RIRS_NOISES}        # simulated_rirs/
SITW=${SITW:-/data/sitw}               # dev/ eval/   (optional)
SDSV=${SDSV:-/data/sdsv2021_task2}     # docs/ wav/   (optional)
TEDX=${TEDX:-/data/tedx_spanish}       # speech/ files/ (optional)
DIPCO=${DIPCO:-/data/dipco}            # audio/ transcriptions/ (optional)
DIPCO_TRIALS=${DIPCO_TRIALS:-$DIPCO/trials.txt}  # the benchmark's trial list (DiPCo is skipped without it)
DATA=${DATA:-data}                     # prepared data dirs
EXP=${EXP:-exp}                        # trained systems and results
# ----------------------------------------------------------------------------- settings
NGPU=${NGPU:-$( (command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | wc -l) || echo 0)}
DEVICE=${DEVICE:-$([ "$NGPU" -gt 0 ] && echo cuda || echo cpu)}   # extraction device
JEFFREYS=${JEFFREYS:-jeffreys}         # the CLI (e.g. .venv/bin/jeffreys)
SEEDS=${SEEDS:-0}                      # training seeds, space-separated (e.g. "0 1 2")
# Extra `--set key=value` overrides for every training run, space-separated
# (the tests use the CPU preset and a few steps: "model.preset=demo steps=2 ...").
TRAIN_SET=${TRAIN_SET:-}
# Extra `--set key=value` overrides of the experiment config (e.g. "metrics.n_boot=100").
EXPERIMENT_SET=${EXPERIMENT_SET:-}
# TEDx Spanish: the paper's derived protocol (400k target, 1.6M non-target same-gender pairs, seed 0).
TEDX_OPTS=${TEDX_OPTS:-}
stage=0
stop_stage=5

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (want --stage N --stop-stage M)" >&2; exit 2 ;;
  esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DATA EXP
DATA=$(mkdir -p "$DATA" && cd "$DATA" && pwd)
EXP=$(mkdir -p "$EXP" && cd "$EXP" && pwd)

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
log() { echo "run.sh [$(date +%H:%M:%S)] $*"; }

# prepare NAME SRC DST [options]: skipped when DST is there (delete it to redo).
prepare() {
  local name=$1 src=$2 dst=$3; shift 3
  if [ -e "$dst" ]; then log "$name: $dst exists, skipped"; return; fi
  log "$name: $src -> $dst"
  "$JEFFREYS" prepare "$name" "$src" "$dst" "$@"
}

if run_stage 0; then
  prepare voxceleb2 "$VOX2" "$DATA/voxceleb2_dev" --split dev
fi

if run_stage 1; then
  prepare voxceleb1 "$VOX1" "$DATA/voxceleb1"
fi

if run_stage 2; then
  prepare musan "$MUSAN" "$DATA/musan"
  prepare rirs "$RIRS" "$DATA/rirs"
fi

if run_stage 3; then
  if [ -d "$SITW" ]; then prepare sitw "$SITW" "$DATA/sitw"; else log "sitw: $SITW not found, skipped (optional)"; fi
  if [ -d "$SDSV" ]; then prepare sdsv "$SDSV" "$DATA/sdsv"; else log "sdsv: $SDSV not found, skipped (optional)"; fi
  # shellcheck disable=SC2086  # TEDX_OPTS is a list of options
  if [ -d "$TEDX" ]; then prepare tedx "$TEDX" "$DATA/tedx" $TEDX_OPTS; else log "tedx: $TEDX not found, skipped (optional)"; fi
  if [ -d "$DIPCO" ] && [ -f "$DIPCO_TRIALS" ]; then
    prepare dipco "$DIPCO" "$DATA/dipco" --trials "$DIPCO_TRIALS"
  else
    log "dipco: $DIPCO or its trial list $DIPCO_TRIALS not found, skipped (optional)"
  fi
fi

# The experiment's options, shared by stages 4 and 5 (the same --out keeps their stamps).
# shellcheck disable=SC2086  # SEEDS is a list of seeds
experiment_args=("$HERE/conf/experiment.yaml" --out "$EXP" --seeds $SEEDS --set "extract.device=$DEVICE")
for kv in $TRAIN_SET; do experiment_args+=(--set "train.$kv"); done
for kv in $EXPERIMENT_SET; do experiment_args+=(--set "$kv"); done
if [ "$NGPU" -gt 1 ]; then
  experiment_args+=(--set "train_launcher=[torchrun, --standalone, --nproc_per_node=$NGPU]")
fi

if run_stage 4; then
  log "train: the four systems, seeds $SEEDS, $NGPU GPU(s) -> $EXP/systems"
  "$JEFFREYS" experiment "${experiment_args[@]}" --only-train
fi

if run_stage 5; then
  log "experiment: extract, score, report -> $EXP"
  "$JEFFREYS" experiment "${experiment_args[@]}"
fi
