#!/usr/bin/env bash
# What each part of the recipe buys on the recorded evaluation voices: the recipe's training
# with one ingredient changed, several seeds each, compared in pairs over seeds and evaluation
# speakers (docs/real-voices.md, "The recipe").
#
#   recipes/realvoices/ingredients.sh DIR [SEEDS]    # after run.sh DIR (its stages 1-2); SEEDS default 3
#
# Variants (data.train, and the config change):
#   deb      the embedded corpus + the Debian recordings' training split (no MBROLA)
#   mb15     deb + 15 of the 44 MBROLA training voices (`prepare mbrola --train-voices 15`)
#   mb31     deb + 31 of them (the same draw: mb15's voices and 16 more)
#   mb       deb + all 44: the recipe's data and training
#   nosynth  mb without the embedded corpus
#   mbsl     mb with Kaldi's sliding-window mean normalisation (model.feature_norm: sliding)
#   mbkaldi  mbsl with Kaldi's energy VAD as well (model.vad: energy): the VoxCeleb recipe's front-end
#   mb8      mb trained 8 epochs instead of 4
# Each run: DIR/ingredients/VARIANT-sSEED/model.pt with the centring mean of 300 utterances of
# its own training data. Two runs at a time, one thread each (about 90 min on 2 cores for
# 3 seeds). Then, per evaluation set (recorded voices, held-out MBROLA voices):
# DIR/ingredients/SET.json (benchmarks/real_voices.py: every variant's seed-mean EER with an
# interval over seeds and speakers, against MFCC statistics standardised on the recipe's
# centring subset) and DIR/ingredients/SET_pairs.json (benchmarks/real_voices_curve.py: each
# ingredient against the run it changes; Holm over the pairs of that set).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 DIR [SEEDS]" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
DIR=$(cd "$1" && pwd)
SEEDS=${2:-3}
D=$DIR/data
OUT=$DIR/ingredients
VARIANTS=(deb mb15 mb31 mb nosynth mbsl mbkaldi mb8)
PAIRS=(mb15:deb mb31:mb15 mb:mb31 mb:deb nosynth:mb mbsl:mb mbkaldi:mb mb8:mb)
mkdir -p "$OUT"
for need in synth/train debvoices/train debvoices/eval mbrola/train mbrola/eval train train_subset; do
  [ -f "$D/$need/wav.scp" ] || { echo "$0: $D/$need not found: run recipes/realvoices/run.sh $DIR first" >&2; exit 2; }
done

for n in 15 31; do
  [ -d "$D/mbrola$n" ] || "$J" prepare mbrola "$DIR/fetch/root" "$D/mbrola$n" --train-voices $n --quiet > /dev/null
done
ln -sfn "$D/train" "$D/comb_mb"  # the recipe's training data (run.sh stage 3) and its centring subset
ln -sfn "$D/train_subset" "$D/sub_mb"
declare -A SOURCES=(
  [deb]="$D/synth/train $D/debvoices/train"
  [mb15]="$D/synth/train $D/debvoices/train $D/mbrola15/train"
  [mb31]="$D/synth/train $D/debvoices/train $D/mbrola31/train"
  [nosynth]="$D/debvoices/train $D/mbrola/train"
)
for data in "${!SOURCES[@]}"; do
  if [ ! -d "$D/comb_$data" ]; then
    # shellcheck disable=SC2086  # the sources are one word each
    "$J" prepare combine "$D/comb_$data" ${SOURCES[$data]} --quiet > /dev/null
  fi
  [ -d "$D/sub_$data" ] || subset "$D/comb_$data" "$D/sub_$data"
done

train_one() {  # VARIANT SEED
  local v=$1 s=$2 data=$1 extra=()
  case $v in
    mbsl) data=mb; extra=(--set model.feature_norm=sliding) ;;
    mbkaldi) data=mb; extra=(--set model.feature_norm=sliding --set model.vad=energy) ;;
    mb8) data=mb; extra=(--set epochs=8) ;;
  esac
  local exp=$OUT/$v-s$s
  if [ ! -f "$exp/model.pt" ]; then
    rm -rf "$exp"
    "$J" train "$HERE/conf/train.yaml" --exp-dir "$exp" --set "data.train=$D/comb_$data" --set "seed=$s" "${extra[@]}" \
      > "$exp.log" 2>&1
  fi
  [ -f "$exp/sub_emb.scp" ] || "$J" extract "$exp/model.pt" "$D/sub_$data" "$exp/sub_emb" --store-mean --quiet
}
export -f train_one
export J HERE D OUT
for s in $(seq 0 $((SEEDS - 1))); do for v in "${VARIANTS[@]}"; do echo "$v $s"; done; done |
  xargs -P 2 -L 1 bash -c 'train_one "$0" "$1"'

evaluate() {  # SET
  local set=$1 models=() pairs=()
  for v in "${VARIANTS[@]}"; do for s in $(seq 0 $((SEEDS - 1))); do models+=(--model "$v=$OUT/$v-s$s/model.pt"); done; done
  "$PY" "$ROOT/benchmarks/real_voices.py" --data "$D/$set" --baseline-train "$D/train_subset" "${models[@]}" \
    --reference mfcc_cosine --n-boot 1000 --scores-dir "$OUT/scores_$set" > "$OUT/$set.json"
  for p in "${PAIRS[@]}"; do pairs+=(--pair "$p"); done
  "$PY" "$ROOT/benchmarks/real_voices_curve.py" --data "$D/$set" --scores "$OUT/scores_$set" "${pairs[@]}" \
    --n-boot 2000 > "$OUT/${set}_pairs.json"
}
evaluate debvoices &  # the two sets side by side, one core each
evaluate mbrola
wait $!
echo "ingredients: $OUT/{debvoices,mbrola}.json and $OUT/{debvoices,mbrola}_pairs.json"
