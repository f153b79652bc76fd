# Sourced by run.sh and ingredients.sh: which jeffreys and python, and the centring subset.
ROOT=$(cd "$HERE/../.." && pwd)
if [ -z "${JEFFREYS:-}" ] && [ -x "$ROOT/.venv/bin/jeffreys" ]; then
  JEFFREYS=$ROOT/.venv/bin/jeffreys
fi
J=${JEFFREYS:-jeffreys}
# the python beside that jeffreys (it has the package), unless PYTHON says otherwise
J_PATH=$(command -v "$J" || true)
if [ -z "${PYTHON:-}" ] && [ -n "$J_PATH" ] && [ -x "$(dirname "$J_PATH")/python" ]; then
  PYTHON=$(dirname "$J_PATH")/python
fi
PY=${PYTHON:-python3}

subset() {  # SRC DST: 300 utterances of SRC spread over its speakers, as `jeffreys experiment` draws them
  "$PY" - "$1" "$2" <<'PYEOF'
import sys
from jeffreys.data.datadir import read_datadir
from jeffreys.experiment.stages import subset_utts, write_subset
dd = read_datadir(sys.argv[1])
write_subset(dd, subset_utts(dd, 300, 0), sys.argv[2])
PYEOF
}
