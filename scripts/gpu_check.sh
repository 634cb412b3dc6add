#!/usr/bin/env bash
# The checks that need a CUDA device, in one go (a few minutes on one GPU):
#   0. python train.py model=dcgan trainer.gpus=1 trainer.precision=16-mixed, a few epochs;
#   1. tests/test_gpu.py: GAN manual optimization under 16-mixed, train.py's path on one GPU in
#      each precision, 16-bit against fp32 learning, DDP on two GPUs where there are two;
#      and no host waits in a training step;
#   2. scripts/benchmark.py --device cuda: genlab against the raw loop, the framework's host cost
#      per batch (tiny nets), mixed precision, compile, and 1 against 2 GPUs under DDP (genlab and a
#      raw DistributedDataParallel loop) where there are two;
#   3. (only when GPU_STEPS names it) results: the results table at the presets' GPU budgets
#      (experiment=gpu/<preset>) for the presets in RESULTS (default: dcgan_mnist, 3 minutes of
#      training, then its reference loop for as long), written to OUTDIR/results-cuda.md; copy
#      it, its JSON and its images/results-cuda/ into docs/ (a later run merges its rows).
#
#   bash scripts/gpu_check.sh [OUTDIR] [benchmark options...]     # OUTDIR: outputs/gpu_check
#   GPU_STEPS="pytest_gpu benchmark" bash scripts/gpu_check.sh out --sections throughput --reps 3
#   GPU_STEPS=results RESULTS="dcgan_mnist vae_mnist" bash scripts/gpu_check.sh out
#
# Each step has its own time limit (CLI_LIMIT, GPU_TEST_LIMIT, BENCHMARK_LIMIT, RESULTS_LIMIT), so
# one that hangs leaves the others' results in OUTDIR; GPU_STEPS names the steps to run (default:
# cli pytest_gpu benchmark), for a machine lent for less time than all of them take.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/gpu_check}
shift || true
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import sys, torch, pytorch_lightning as pl; print(sys.version.split()[0], 'torch', torch.__version__,
'lightning', pl.__version__, 'GPUs', torch.cuda.device_count())"
} 2>&1 | tee "$out/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to OUTDIR/NAME.txt
  local name=$1 limit=$2
  shift 2
  [[ " ${GPU_STEPS:-cli pytest_gpu benchmark} " == *" $name "* ]] || return 0
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "[$name: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s]" | tee -a "$out/$name.txt"
}

# the command line as a user types it: DCGAN under 16-mixed for a few epochs; its last sample grid
# is copied to OUTDIR (look at it)
run=$(mktemp -d)
step cli "${CLI_LIMIT:-240}" python3 train.py model=dcgan trainer.gpus=1 trainer.precision=16-mixed \
  trainer.max_epochs=5 data.source=bundled logger=csv "hydra.run.dir=$run"
cp "$run"/samples/samples_epoch004.png "$out/" 2>/dev/null

step pytest_gpu "${GPU_TEST_LIMIT:-300}" python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py
step benchmark "${BENCHMARK_LIMIT:-600}" python3 scripts/benchmark.py --device cuda \
  --out "$out/BENCHMARKS-cuda.md" --json "$out/benchmarks-cuda.json" "$@"
# the results rows merge with the previous table's: start from docs/'s copy (EXAMPLES_ROOT: a folder
# holding FashionMNIST/raw, for the Fashion-MNIST presets)
if [[ " ${GPU_STEPS:-} " == *" results "* && -f docs/results-cuda.json ]]; then
  cp docs/results-cuda.json "$out/"
fi
step results "${RESULTS_LIMIT:-570}" python3 scripts/benchmark.py --device cuda --sections results \
  --results ${RESULTS:-dcgan_mnist} ${EXAMPLES_ROOT:+--examples-root "$EXAMPLES_ROOT"} \
  --results-out "$out/results-cuda.md" --out "$out/BENCHMARKS-results-cuda.md" --json "$out/benchmarks-results-cuda.json"
