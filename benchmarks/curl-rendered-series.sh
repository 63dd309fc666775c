#!/usr/bin/env bash
# What a curl user runs to render every instance of a series: list it, then fetch each
# rendered image in parallel (the job `dcmweb -m retrieve .../series/R/rendered` does).
#
#   benchmarks/curl-rendered-series.sh BASE_URL STUDY SERIES OUT_DIR [PARALLEL] [QUERY]
#
# 1. one QIDO request lists the series' instances;
# 2. jq turns the list into a curl config, one rendered GET per instance;
# 3. one curl process fetches them all, PARALLEL (default 4) at a time.
set -euo pipefail
base=$1 study=$2 series=$3 out=$4 parallel=${5:-4} query=${6:-viewport=64,64}
instances="$base/studies/$study/series/$series/instances"
mkdir -p "$out"
curl --no-progress-meter --fail --noproxy '*' -H 'Accept: application/dicom+json' \
  -o "$out/list.json" "$instances?limit=0"
jq -r --arg base "$instances" --arg out "$out" --arg query "$query" '[
  .[] | .["00080018"].Value[0] as $uid
  | "url = \"\($base)/\($uid)/rendered?\($query)\"\noutput = \"\($out)/\($uid).jpg\"\n"
    + "header = \"Accept: image/jpeg\"\nnoproxy = \"*\"\nfail\nno-progress-meter"
  ] | join("\nnext\n")' "$out/list.json" > "$out/fetch.curlrc"
curl --no-progress-meter --parallel --parallel-max "$parallel" --config "$out/fetch.curlrc"
