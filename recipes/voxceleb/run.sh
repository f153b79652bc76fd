#!/usr/bin/env bash
# Reproduce Table 1 of Bousquet & Rouvier (ICASSP 2023) on the real corpora.
#
#   recipes/voxceleb/run.sh [--stage N] [--stop-stage M]
#
# Stages (each one re-runnable: finished work is skipped, interrupted training resumes):
#   0  prepare VoxCeleb2 dev (training set); optionally (VOX2_CONVERT=flac|wav) decode its m4a
#      once into FLAC/WAV files and train on those (cheaper crops, see docs/benchmarks.md)
#   1  prepare VoxCeleb1 (Vox1-O/E/H cleaned trial lists, from VOX1 or VOX1_TRIALS)
#   2  prepare MUSAN and RIRS_NOISES (augmentation)
#   3  prepare the other evaluation corpora that are present: SITW, SdSV task 2, TEDx Spanish, DiPCo
#   4  train the four systems (AAM; AAM+LS with weight decay; AAM+LS without; AAM+Jeffreys)
#      from conf/base.yaml and their differences in conf/experiment.yaml, once per seed
#      (TARGET_WEIGHT below: the paper's eq. 4, or the authors' code for LS and Jeffreys):
#      `jeffreys experiment conf/experiment.yaml --only-train`, under torchrun on all
#      visible GPUs when there are several; on several machines (NNODES, RDZV_ENDPOINT) run
#      this stage on every one of them at once, EXP on a shared file system
#   5  extract, score (training-mean centring + cosine), metrics with intervals over seeds and
#      speakers, paired comparisons, Table 1, Figs. 1-5 and results.json (the same command)
#
# Paths below; every one can also be set from the environment (VOX2=/data/vox2 ./run.sh).
set -euo pipefail

# ----------------------------------------------------------------------------- paths
VOX2=${VOX2:-/data/VoxCeleb2}          # dev/aac/idXXXXX/VIDEO/NNNNN.m4a
VOX1=${VOX1:-/data/VoxCeleb1}          # dev/wav + test/wav, or wav/ (zips unpacked together); trial lists
VOX1_TRIALS=${VOX1_TRIALS:-}           # folder with veri_test2.txt, list_test_all2.txt, list_test_hard2.txt when not in VOX1
MUSAN=${MUSAN:-/data/musan}            # music/ noise/ speech/
RIRS=${RIRS:-/data/RIRS_NOISES}        # simulated_rirs/
SITW=${SITW:-/data/sitw}               # dev/ eval/   (optional)
SDSV=${SDSV:-/data/sdsv2021_task2}     # docs/ wav/   (optional)
SDSV_KEY=${SDSV_KEY:-}                 # the organisers' key (one 1|0 per trial); without it: trial_pairs only
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
# Weight of -log p_k in the LS and Jeffreys systems (docs/losses.md): "paper" = 1, eq. 4 as
# printed; "reference" = 1 - alpha - beta (0.9 for LS, 0.875 for Jeffreys), as the authors'
# released code. Reference systems are named *_ref (aam_ls_wd_ref, aam_ls_ref, aam_jeffreys_ref)
# and train beside the paper ones in the same EXP; the AAM baseline (no smoothing) is shared.
TARGET_WEIGHT=${TARGET_WEIGHT:-paper}
# Several machines training together (stage 4 only; docs/recipes.md): torchrun --nnodes with
# the c10d rendezvous at RDZV_ENDPOINT (HOST:PORT of one of them, reachable from all).
NNODES=${NNODES:-1}
RDZV_ENDPOINT=${RDZV_ENDPOINT:-}
RDZV_ID=${RDZV_ID:-jeffreys-voxceleb}
# Extra `--set key=value` overrides for every training run, space-separated
# (the tests use the CPU preset and a few steps: "model.preset=demo steps=2 ...").
TRAIN_SET=${TRAIN_SET:-}
# Extra `--set key=value` overrides of the experiment config (e.g. "metrics.n_boot=100").
EXPERIMENT_SET=${EXPERIMENT_SET:-}
# TEDx Spanish: the paper's derived protocol (400k target, 1.6M non-target same-gender pairs, seed 0).
TEDX_OPTS=${TEDX_OPTS:-}
# Decode VoxCeleb2's m4a once to flac or wav (empty: train on the m4a), into VOX2_AUDIO.
VOX2_CONVERT=${VOX2_CONVERT:-}
VOX2_AUDIO=${VOX2_AUDIO:-}             # default: $DATA/voxceleb2_dev_$VOX2_CONVERT.audio
stage=0
stop_stage=5

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (want --stage N --stop-stage M)" >&2; exit 2 ;;
  esac
done

if [ "$NNODES" -gt 1 ] && [ -z "$RDZV_ENDPOINT" ]; then
  echo "run.sh: NNODES=$NNODES needs RDZV_ENDPOINT=HOST:PORT (the rendezvous every node reaches)" >&2; exit 2
fi
case "$VOX2_CONVERT" in
  ""|flac|wav) ;;
  *) echo "run.sh: VOX2_CONVERT must be flac, wav or empty, got '$VOX2_CONVERT'" >&2; exit 2 ;;
esac
# conf/experiment.yaml reads both: the loss key and the suffix of the systems' names.
case "$TARGET_WEIGHT" in
  paper) SYSTEM_SUFFIX= ;;
  reference) SYSTEM_SUFFIX=_ref ;;
  *) echo "run.sh: TARGET_WEIGHT must be paper or reference, got '$TARGET_WEIGHT'" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DATA EXP TARGET_WEIGHT SYSTEM_SUFFIX
DATA=$(mkdir -p "$DATA" && cd "$DATA" && pwd)
EXP=$(mkdir -p "$EXP" && cd "$EXP" && pwd)

TRAIN_DATA=$DATA/voxceleb2_dev${VOX2_CONVERT:+_$VOX2_CONVERT}
VOX2_AUDIO=${VOX2_AUDIO:-$TRAIN_DATA.audio}

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
  if [ -n "$VOX2_CONVERT" ]; then
    # One decode per file, over all cores; files are renamed into place when whole, so an
    # interrupted conversion resumes where it stopped.
    prepare convert "$DATA/voxceleb2_dev" "$TRAIN_DATA" --audio-dir "$VOX2_AUDIO" --format "$VOX2_CONVERT"
  fi
fi

if run_stage 1; then
  prepare voxceleb1 "$VOX1" "$DATA/voxceleb1" ${VOX1_TRIALS:+--trials-dir "$VOX1_TRIALS"}
fi

if run_stage 2; then
  prepare musan "$MUSAN" "$DATA/musan"
  prepare rirs "$RIRS" "$DATA/rirs"
fi

if run_stage 3; then
  if [ -d "$SITW" ]; then prepare sitw "$SITW" "$DATA/sitw"; else log "sitw: $SITW not found, skipped (optional)"; fi
  # Without SDSV_KEY only `trial_pairs` is written (no labels): the experiment cannot score it.
  if [ -d "$SDSV" ]; then prepare sdsv "$SDSV" "$DATA/sdsv" ${SDSV_KEY:+--key "$SDSV_KEY"}; else log "sdsv: $SDSV not found, skipped (optional)"; fi
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
experiment_args=("$HERE/conf/experiment.yaml" --out "$EXP" --seeds $SEEDS --set "extract.device=$DEVICE"
                 --set "train.data.train=$TRAIN_DATA")
for kv in $TRAIN_SET; do experiment_args+=(--set "train.$kv"); done
for kv in $EXPERIMENT_SET; do experiment_args+=(--set "$kv"); done
# Each training runs as `LAUNCHER -m jeffreys train ...` (the experiment's train_launcher).
if [ "$NNODES" -gt 1 ]; then
  nproc=$([ "$NGPU" -gt 0 ] && echo "$NGPU" || echo 1)
  experiment_args+=(--set "train_launcher=[torchrun, --nnodes=$NNODES, --nproc-per-node=$nproc, --rdzv-backend=c10d, --rdzv-endpoint=$RDZV_ENDPOINT, --rdzv-id=$RDZV_ID, --max-restarts=0]")
elif [ "$NGPU" -gt 1 ]; then
  experiment_args+=(--set "train_launcher=[torchrun, --standalone, --nproc-per-node=$NGPU]")
fi

if run_stage 4; then
  log "train: the four systems ($TARGET_WEIGHT weighting), seeds $SEEDS, $NGPU GPU(s) on each of $NNODES node(s) -> $EXP/systems"
  "$JEFFREYS" experiment "${experiment_args[@]}" --only-train
fi

if run_stage 5; then
  log "experiment ($TARGET_WEIGHT weighting): extract, score, report -> $EXP"
  "$JEFFREYS" experiment "${experiment_args[@]}"
fi
