#!/usr/bin/env bash
# The GPU table in one run: the GPU tests, the attack speeds at two batch sizes with the
# fast path and the peers, and the strength of every fast variant against float32. It
# installs nothing: it uses the Python, torch and peer libraries it finds, and signattack
# from this checkout (src/ on PYTHONPATH). It writes docs/benchmarks/gpu.json, which the
# Benchmarks page renders.
#
#   bash benchmarks/gpu.sh                                   # on a machine with a GPU
#   DEVICE=cpu BATCHES="8 16" ROUNDS=2 STEPS=2 OUT=/tmp/gpu bash benchmarks/gpu.sh
#                                                            # a rehearsal, on the CPU
#
# Under 8 minutes on one H100-class GPU: every part has its own time limit (TIME_TESTS,
# TIME_SPEED per batch size, TIME_STRENGTH, in seconds), and what finished is kept.
set -euo pipefail

cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
BATCHES="${BATCHES:-256 2048}"
ROUNDS="${ROUNDS:-10}"
STEPS="${STEPS:-5}"
OUT="${OUT:-docs/benchmarks}"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

"$PYTHON" - "$DEVICE" <<'PY'
import sys, torch
device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu.sh: torch sees no CUDA device (set DEVICE=cpu for a rehearsal)")
name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
print(f"gpu.sh: torch {torch.__version__} on {name}", file=sys.stderr)
PY

# Each part has a time limit (seconds, from the environment); a part that fails or runs out
# of time is recorded as such, and the parts that finished are still written.
TIME_TESTS="${TIME_TESTS:-150}"
TIME_SPEED="${TIME_SPEED:-240}"
TIME_STRENGTH="${TIME_STRENGTH:-150}"

# The GPU tests and the strength check time nothing: they run side by side.
echo "== GPU tests and the strength of the fast variants" >&2
COMPILE_FLAG=""
if [ "$DEVICE" = "cpu" ]; then COMPILE_FLAG="--no-compile"; fi
set +e
timeout "$TIME_TESTS" "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests/ \
  > "$WORK/tests.txt" 2>&1 &
TESTS_PID=$!
timeout "$TIME_STRENGTH" "$PYTHON" benchmarks/fast_strength.py --device "$DEVICE" $COMPILE_FLAG \
  --json "$WORK/strength.json" > "$WORK/strength.txt" 2>&1
echo "$?" > "$WORK/strength.rc"
wait "$TESTS_PID"
TESTS_RC=$?
set -e
tail -3 "$WORK/tests.txt" >&2
tail -8 "$WORK/strength.txt" >&2

for batch in $BATCHES; do
  echo "== speed, batch $batch" >&2
  set +e
  timeout "$TIME_SPEED" "$PYTHON" benchmarks/attack_speed.py --device "$DEVICE" \
    --batch "$batch" --steps "$STEPS" --rounds "$ROUNDS" --compile \
    --json "$WORK/speed-$batch.json" >&2
  echo "$?" > "$WORK/speed-$batch.rc"
  set -e
done

"$PYTHON" - "$WORK" "$OUT/gpu.json" "$TESTS_RC" "$BATCHES" <<'PY'
import json, pathlib, re, sys
work, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
tests_rc, batches = int(sys.argv[3]), [int(b) for b in sys.argv[4].split()]


def status(rc):
    return "timed out" if rc == 124 else f"failed with exit status {rc}"


lines = (work / "tests.txt").read_text().strip().splitlines()
summary = lines[-1] if lines and tests_rc != 124 else status(tests_rc)
counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
speed, missing = [], []
for batch in batches:
    result = work / f"speed-{batch}.json"
    rc = int((work / f"speed-{batch}.rc").read_text())
    if rc == 0 and result.is_file():
        speed.append(json.loads(result.read_text()))
    else:
        missing.append(f"the speeds at batch {batch}: {status(rc)}")
strength_rc = int((work / "strength.rc").read_text())
strength = None
if strength_rc == 0 and (work / "strength.json").is_file():
    strength = json.loads((work / "strength.json").read_text())
else:
    missing.append(f"the strength of the fast variants: {status(strength_rc)}")
report = {
    "tests": {"exit_status": tests_rc, "summary": summary, **counts},
    "speed": speed,
    "strength": strength,
    "missing": missing,
}
target.write_text(json.dumps(report, indent=2) + "\n")
print(f"gpu.sh: wrote {target}" + "".join(f"; missing {m}" for m in missing), file=sys.stderr)
PY
exit "$TESTS_RC"
