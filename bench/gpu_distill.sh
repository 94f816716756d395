#!/usr/bin/env bash
# The commands that trained the shipped SmolLM2-135M drafts on one GPU (H100 unless noted; see
# docs/benchmarks/gpu_speed.md). A one-step run builds the corpus cache (standard-library code +
# the verifier's own sampled answers to 2,400 built-in chat prompts); then the drafts of one
# round train at once for the same wall time (one small distillation does not fill an H100).
# The learning rate anneals by time.
#   round 1 (2026-11-26, 290 s each): l1, l2, wide, the 8x256 narrow comparison draft and
#           the PairConnect draft;
#   round 2 (2026-11-26, 419 s each): the feature draft, the 4-layer draft (fresh layers,
#           MLP 768: it fits the 64 MB budget beside the feature draft) and narrow again.
#   round 3 (2026-11-26, 461 s): round 2's feature draft trained further, alone on the
#           GPU, batch 32, on a corpus with 4,800 self-generated answers;
#   round 4 (2026-12-06, 358 s on an H200: what one 10-minute call left after building the
#           corpus): round 3's feature draft trained further the same way.
#   round 5 (2026-12-07, 424 s on an H100, GEN_BATCH=1200): round 4's feature
#           draft trained further the same way on a corpus that adds 10.1M tokens of the
#           multi-language sources and prose of bench/draft_corpus.py (FILES: its folder, built
#           where the package index is reachable and carried to the GPU; the device has no
#           network). GEN_BATCH sets the self-generation batch (default 400).
#   the unroll-2 round (2026-12-07, 394 s on an H100; see docs/benchmarks/gpu_speed.md):
#           round 5 trained further the same way with UNROLL=2,
#           which trains its 2nd pass on its own predicted features.
#   the two-turn round (2026-12-07, 450 s on an H200; the shipped one): the unroll-2
#           round trained further with UNROLL=2 CHAT_TURNS=2 CHAT_PROMPTS=requests.txt (the
#           file bench/chat_requests.py writes).
# CHAT_TURNS and CHAT_PROMPTS pass --chat-turns and --chat-prompts to the corpus build (a file
# of requests such as bench/chat_requests.py writes); unset, the built-in one-turn requests.
# Usage: bench/gpu_distill.sh OUT_DIR [SECONDS_PER_DRAFT] [ROUND]
set -euo pipefail
out=${1:?output folder}
secs=${2:-290}
round=${3:-1}
chat=2400; [ "$round" -ge 3 ] && chat=4800
corpus=(--corpus-cache "$out/corpus.safetensors")
if [ "$round" -ge 5 ]; then
  files=${FILES:-$out/draft-corpus}
  [ -d "$files" ] || python bench/draft_corpus.py --out "$files"
  corpus=(--corpus code,chat,files --files "$files" --corpus-cache "$out/corpus-files.safetensors")
fi
chat_opts=(--chat-turns "${CHAT_TURNS:-1}")
[ -z "${CHAT_PROMPTS:-}" ] || chat_opts+=(--chat-prompts "$CHAT_PROMPTS")
thrifty distill --out "$out/scratch" --depth 1 --steps 1 "${corpus[@]}" "${chat_opts[@]}" \
    --code-tokens 6000000 --self-generate "$chat" --gen-batch "${GEN_BATCH:-400}" --seq-len 512 --quiet
if [ "$round" -ge 3 ]; then
  exec thrifty distill --out "$out/smollm2-draft-feat" --resume smollm2-draft-feat \
      --verifier smollm2-135m "${corpus[@]}" --steps 40000 --unroll "${UNROLL:-1}" \
      --max-seconds "$secs" --batch 32 --seq-len 512 --quiet
fi
common=(--verifier smollm2-135m --corpus-cache "$out/corpus.safetensors" --steps 20000
        --max-seconds "$secs" --batch 16 --seq-len 512 --quiet)
thrifty distill --out "$out/smollm2-draft-narrow" --depth 8 --width 256 --init fresh \
    "${common[@]}" &
if [ "$round" = 1 ]; then
  thrifty distill --out "$out/smollm2-draft-l1" --depth 1 --init select "${common[@]}" &
  thrifty distill --out "$out/smollm2-draft-l2" --depth 2 --init select "${common[@]}" &
  thrifty distill --out "$out/smollm2-draft-wide" --depth 1 --width 1152 --kv-heads 3 \
      --intermediate-size 768 --init fresh "${common[@]}" &
  thrifty distill-pairconnect --verifier hf --model smollm2-135m --verifier-option device=cuda \
      --verifier-option dtype=bfloat16 --device cuda --corpus shakespeare --corpus stdlib \
      --steps 20000 --max-seconds "$secs" --batch 32 --seq-len 128 --lr 3e-3 \
      --out "$out/pairconnect-smollm2.safetensors" &
else
  thrifty distill --out "$out/smollm2-draft-feat" --depth 1 --init fresh --features \
      "${common[@]}" &
  thrifty distill --out "$out/smollm2-draft-l4" --depth 4 --init fresh --intermediate-size 768 \
      "${common[@]}" &
fi
wait
