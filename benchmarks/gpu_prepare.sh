#!/usr/bin/env bash
# Prepare, on the development machine, what benchmarks/gpu_session.sh needs on a GPU machine that
# reaches no registry: the pinned wheels of the packages its image lacks (into .whl/) and
# coco-mini's JPEGs (into .gpu_data/data/coco-mini, the layout of ../shared). Both folders are git-ignored through
# .git/info/exclude and travel with `carry`. Run from the repository root.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude="$(git rev-parse --git-path info/exclude)"
for folder in /.whl/ /.gpu_data/; do
    grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >>"$exclude"
done

# the GPU image has torch, torchvision, timm, numpy, opencv, yaml, tqdm, pytest; the rest, pinned as in requirements.lock
packages=(pydantic pydantic_core annotated-types typing-inspection typing_extensions boto3 botocore jmespath s3transfer pycocotools)
pins=()
for name in "${packages[@]}"; do
    pin=$(grep -iE "^${name//[-_]/[-_]}==" requirements.lock | head -n1)
    [ -n "$pin" ] || { echo "requirements.lock: no pin for $name" >&2; exit 1; }
    pins+=("$pin")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform any -d .whl "${pins[@]}"

shared="${TRS_POSE_SHARED:-$(dirname "$PWD")/shared}"
rm -rf .gpu_data && mkdir -p .gpu_data/data
cp -r "$shared/data/coco-mini" .gpu_data/data/coco-mini
du -sh .whl .gpu_data
