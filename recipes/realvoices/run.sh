#!/usr/bin/env bash
# The best speaker model this recipe trains on a 2-core CPU from what pip and apt-get reach,
# evaluated on recorded voices next to MFCC statistics (docs/real-voices.md).
#
#   recipes/realvoices/run.sh DIR            # from nothing; about 8 min on 2 cores
#   STAGE=4 recipes/realvoices/run.sh DIR    # from stage 4 on (each stage reuses the ones before)
#
# 1. fetch.sh --mbrola DIR/fetch: the Debian recordings and the MBROLA voices (apt-get download
#    through a private apt configuration for contrib/non-free; nothing installed, no root)
# 2. data: the embedded corpus (synthetic voices), `prepare debvoices` (recorded voices: train
#    and eval speakers apart) and `prepare mbrola` (diphone voices: train, dev, eval apart)
# 3. DIR/data/train: the three training splits combined (`prepare combine`); its info.json says
#    what the model hears, and the model's meta keeps it (train_data)
# 4. train recipes/realvoices/conf/train.yaml (AAM-Jeffreys, the paper's eq. 4) on it, seed $SEED
# 5. DIR/model.pt: the trained model with the centring mean of 300 training utterances,
#    calibrated on the MBROLA dev voices (held out from training and from every evaluation)
# 6. DIR/results.json: EER and minDCF with speaker-bootstrap intervals on the recorded
#    evaluation voices (debvoices eval) and, apart, on the held-out MBROLA voices, for the
#    model and for MFCC statistics on the same trials, and the model's change against them
# Needs: the repository's venv (`make venv`) or an installed jeffreys (JEFFREYS=... to choose),
# apt-get and dpkg (Debian or Ubuntu), a C compiler (for a 12-line stand-in of libpcaudio).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR   (STAGE=N to start from stage N; SEED=S for another training seed)" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
STAGE=${STAGE:-1}
SEED=${SEED:-0}
case "$STAGE" in
  [1-6]) ;;
  *) echo "$0: STAGE must be 1 to 6, got '$STAGE'" >&2; exit 2 ;;
esac
DIR=$1
mkdir -p "$DIR/logs"
DIR=$(cd "$DIR" && pwd)
D=$DIR/data
start=$(date +%s)
say() { echo "realvoices [$(( $(date +%s) - start )) s]: $*"; }

if [ "$STAGE" -le 1 ]; then
  say "stage 1: fetching the Debian packages into $DIR/fetch"
  "$HERE/fetch.sh" --mbrola "$DIR/fetch" > "$DIR/logs/fetch.log" 2>&1 || { tr '\r' '\n' < "$DIR/logs/fetch.log" | tail -n 5 >&2; exit 1; }
fi
if [ "$STAGE" -le 2 ]; then
  say "stage 2: data"
  "$J" prepare synth "$D/synth" --overwrite > "$DIR/logs/synth.log"
  "$J" prepare debvoices "$DIR/fetch/root" "$D/debvoices" --overwrite --quiet > "$DIR/logs/debvoices.log"
  "$J" prepare mbrola "$DIR/fetch/root" "$D/mbrola" --overwrite --quiet > "$DIR/logs/mbrola.log"
  grep -h -E "^  $D/[a-z]+/(train|eval|dev):" "$DIR"/logs/{debvoices,mbrola}.log || true
fi
if [ "$STAGE" -le 3 ]; then
  say "stage 3: the training data"
  "$J" prepare combine "$D/train" "$D/synth/train" "$D/debvoices/train" "$D/mbrola/train" --overwrite --quiet
  rm -rf "$D/train_subset"
  subset "$D/train" "$D/train_subset"
fi
if [ "$STAGE" -le 4 ]; then
  say "stage 4: training (seed $SEED)"
  rm -rf "$DIR/exp"
  "$J" train "$HERE/conf/train.yaml" --exp-dir "$DIR/exp" --set "data.train=$D/train" --set "seed=$SEED" \
    --set num_threads=2 > "$DIR/logs/train.log" 2>&1 || { tr '\r' '\n' < "$DIR/logs/train.log" | tail -n 5 >&2; exit 1; }
fi
if [ "$STAGE" -le 5 ]; then
  say "stage 5: centring mean and calibration"
  cp "$DIR/exp/model.pt" "$DIR/model.pt"
  "$J" extract "$DIR/model.pt" "$D/train_subset" "$DIR/exp/train_subset_emb" --store-mean --quiet
  "$J" calibrate "$DIR/model.pt" "$D/mbrola/dev" --out "$DIR/calibration.json" --quiet > "$DIR/logs/calibrate.log"
fi
if [ "$STAGE" -le 6 ]; then
  say "stage 6: evaluation against MFCC statistics"
  for set in debvoices mbrola; do
    "$PY" "$ROOT/benchmarks/real_voices.py" --data "$D/$set" --baseline-train "$D/train_subset" \
      --model "recipe=$DIR/model.pt" --reference mfcc_cosine --n-boot 2000 > "$DIR/results_$set.json"
  done
  "$PY" - "$DIR" <<'EOF'
import json, math, sys
from pathlib import Path
d = Path(sys.argv[1])
out = {}
for name, label in (("debvoices", "recorded voices (Debian, eval split)"), ("mbrola", "held-out MBROLA voices (diphone speech)")):
    r = json.loads((d / f"results_{name}.json").read_text())
    out[name] = {"label": label, **r}
    for lst, m in r["systems"]["recipe"].items():
        b, v = r["systems"]["mfcc_cosine"][lst], m["vs_mfcc_cosine"]
        print(f"{label}, {lst}: model EER {100 * m['eer_mean']:.2f} % {[round(100 * x, 2) for x in m['eer_mean_ci']]}, "
              f"MFCC statistics {100 * b['eer_mean']:.2f} % {[round(100 * x, 2) for x in b['eer_mean_ci']]}, "
              f"change {100 * v['diff_rel']:+.1f} % {[round(100 * x, 1) for x in v['ci']]} (p adjusted {v['p_adjusted']})")
def finite(x):  # a relative change against an EER of 0 is undefined: null, not NaN, in the JSON
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return {k: finite(v) for k, v in x.items()} if isinstance(x, dict) else [finite(v) for v in x] if isinstance(x, list) else x
(d / "results.json").write_text(json.dumps(finite(out), indent=2, allow_nan=False) + "\n")
EOF
fi
say "done: $DIR/model.pt (its meta's train_data says what it heard); $DIR/results.json"
