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
# Under 8 minutes on one H100-class GPU: every part has its own time limit.
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

echo "== GPU tests" >&2
set +e
timeout 150 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests/ > "$WORK/tests.txt" 2>&1
TESTS_RC=$?
set -e
tail -3 "$WORK/tests.txt" >&2

for batch in $BATCHES; do
  echo "== speed, batch $batch" >&2
  timeout 240 "$PYTHON" benchmarks/attack_speed.py --device "$DEVICE" --batch "$batch" \
    --steps "$STEPS" --rounds "$ROUNDS" --compile --json "$WORK/speed-$batch.json" >&2
done

echo "== strength of the fast variants" >&2
COMPILE_FLAG=""
if [ "$DEVICE" = "cpu" ]; then COMPILE_FLAG="--no-compile"; fi
timeout 150 "$PYTHON" benchmarks/fast_strength.py --device "$DEVICE" $COMPILE_FLAG \
  --json "$WORK/strength.json"

"$PYTHON" - "$WORK" "$OUT/gpu.json" "$TESTS_RC" <<'PY'
import json, pathlib, re, sys
work, target, tests_rc = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
summary = (work / "tests.txt").read_text().strip().splitlines()[-1]
counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
speed = [json.loads(p.read_text()) for p in sorted(work.glob("speed-*.json"),
         key=lambda p: int(p.stem.split("-")[1]))]
report = {
    "tests": {"exit_status": tests_rc, "summary": summary, **counts},
    "speed": speed,
    "strength": json.loads((work / "strength.json").read_text()),
}
target.write_text(json.dumps(report, indent=2) + "\n")
print(f"gpu.sh: wrote {target}", file=sys.stderr)
PY
exit "$TESTS_RC"
