#!/usr/bin/env bash
# One benchmark section at two commits, in alternating rounds: A B, A B, ...
#
#   bash scripts/ab_commits.sh 43ece78 HEAD                       # host cost, 3 rounds
#   ROUNDS=5 bash scripts/ab_commits.sh 43ece78 HEAD --sections throughput --models vae --batch-sizes 512
#
# Each commit is checked out once into a worktree under ${AB_DIR:-/tmp/genlab-ab} and its own
# scripts/benchmark.py runs there with that commit's src/ first on PYTHONPATH, in the current
# Python environment. The machine's drift over minutes hits both commits alike when their runs
# alternate; compare the rows of the same round, then the rounds. Every row is also in
# ${AB_DIR}/<commit>-<round>.json (and its output in .log). Default arguments: --sections host_cost.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,12p' "$0"
    exit 2
fi
a=$(git rev-parse --short "$1")
b=$(git rev-parse --short "$2")
shift 2
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--sections host_cost)
dir=${AB_DIR:-/tmp/genlab-ab}
mkdir -p "$dir"
export WANDB_MODE=${WANDB_MODE:-disabled}

for commit in "$a" "$b"; do
    if [ ! -d "$dir/$commit" ]; then
        git worktree add --detach -f "$dir/$commit" "$commit" >/dev/null
    fi
done

for round in $(seq 1 "${ROUNDS:-3}"); do
    for commit in "$a" "$b"; do
        echo "== $commit, round $round"
        log="$dir/$commit-$round.log"
        if ! (cd "$dir/$commit" && PYTHONPATH="$dir/$commit/src" python scripts/benchmark.py "${args[@]}" \
                --out "$dir/$commit-$round.md" --json "$dir/$commit-$round.json" >"$log" 2>&1); then
            tail -n 20 "$log"
            exit 1
        fi
        grep -E "tiny nets|batch +[0-9]+ \(|^\| (mnist|text) \||img/s" "$log" || true
    done
done
echo "Worktrees are left in $dir; remove them with: git worktree remove --force $dir/<commit>"
