#!/usr/bin/env bash
# The best curl script for "download the whole store": list, then fetch in parallel.
#
#   benchmarks/curl-retrieve-store.sh BASE_URL OUT_DIR instances|studies [PARALLEL]
#
# 1. one QIDO request lists every instance (or study) with its RetrieveURL (0008,1190);
# 2. jq turns the list into a curl config, one transfer per instance (or study);
# 3. one curl process fetches them all, PARALLEL (default 4) at a time.
# curl cannot split multipart/related: each output file is the raw multipart answer
# (boundary lines and part headers around the DICOM bytes), not a .dcm file.
set -euo pipefail
base=$1 out=$2 level=$3 parallel=${4:-4}
mkdir -p "$out"
curl --no-progress-meter --fail --noproxy '*' -H 'Accept: application/dicom+json' \
  -o "$out/list.json" "$base/$level?limit=0&includefield=00081190"
jq -r --arg out "$out" '[
  .[] | (if has("00080018") then .["00080018"] else .["0020000D"] end).Value[0] as $uid
  | "url = \"\(.["00081190"].Value[0])\"\noutput = \"\($out)/\($uid).multipart\"\n"
    + "header = \"Accept: multipart/related; type=\\\"application/dicom\\\"; transfer-syntax=*\"\n"
    + "noproxy = \"*\"\nfail\nno-progress-meter"
  ] | join("\nnext\n")' "$out/list.json" > "$out/fetch.curlrc"
curl --no-progress-meter --parallel --parallel-max "$parallel" --config "$out/fetch.curlrc"
