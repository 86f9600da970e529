#!/usr/bin/env bash
# Fetches the knowledge base's test corpus once into .tools/corpus (or $JARVIS_CORPUS_DIR):
# the Python 3.11 documentation as HTML (about 530 pages, 67 MB), from Debian's
# `python3.11-doc` package (PSF license), with apt-get. Exits non-zero, with the reason,
# when it cannot be fetched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORPUS="${JARVIS_CORPUS_DIR:-$ROOT/.tools/corpus}"
HTML="$CORPUS/python3.11-doc/html"

if [ -f "$HTML/library/functions.html" ]; then
  exit 0
fi

mkdir -p "$CORPUS/.downloads"
echo "Fetching the Python 3.11 documentation (python3.11-doc, 13 MB) into $CORPUS"
download() {
  # apt-get's progress goes to stderr: stdout carries only the path of the package.
  (cd "$CORPUS/.downloads" && apt-get download python3.11-doc 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
  ls "$CORPUS"/.downloads/python3.11-doc_*_all.deb 2>/dev/null | head -1
}
DEB="$(download)"
if [ -z "$DEB" ]; then
  # A machine that never read the package lists reads them first.
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
  DEB="$(download)"
fi
if [ -z "$DEB" ]; then
  echo "fetch-corpus: apt-get could not download python3.11-doc" >&2
  exit 1
fi
rm -rf "$CORPUS/.extract"
dpkg-deb -x "$DEB" "$CORPUS/.extract"
mkdir -p "$CORPUS/python3.11-doc"
rm -rf "$HTML"
mv "$CORPUS/.extract/usr/share/doc/python3.11/html" "$HTML"
rm -rf "$CORPUS/.extract"
echo "The Python 3.11 documentation is in $HTML"
