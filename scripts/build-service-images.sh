#!/usr/bin/env bash
# Builds the release binaries and one image per product, plus the isolation tests' probe:
# the runtime base plus the binary, run as a non-root user. An image whose inputs (binary and Dockerfile) are unchanged is not
# rebuilt: the image carries a digest of its inputs in a label, compared before building.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
binaries=(documint cronping flagbit webhookvault probe)
base="${RUNTIME_BASE_IMAGE:-refdeploy/base:bookworm}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

echo "cargo: building release binaries (several minutes the first time, seconds after)"
packages=()
for binary in "${binaries[@]}"; do packages+=(-p "$binary"); done
packages+=(-p audit) # run on the host by `make up` and `make audit`, not shipped in an image
packages+=(-p documint-render) # DocuMint's renderer, shipped in the documint image beside it

# Extra binaries an image carries beside its product's own.
extra_binaries() {
    case "$1" in
        documint) echo documint-render ;;
    esac
}
(cd "$root" && cargo build --release --locked --bins "${packages[@]}")

for product in "${binaries[@]}"; do
    image="refdeploy/$product:latest"
    context="$target_dir/images/$product"
    mkdir -p "$context"
    cp -p "$target_dir/release/$product" "$context/$product"
    extras=$(extra_binaries "$product")
    copies=""
    for extra in $extras; do
        cp -p "$target_dir/release/$extra" "$context/$extra"
        copies+="COPY $extra /usr/local/bin/$extra"$'\n'
    done

    cat >"$context/Dockerfile" <<DOCKERFILE
FROM $base
COPY $product /usr/local/bin/$product
${copies}USER 10001:10001
ENTRYPOINT ["/usr/local/bin/$product"]
DOCKERFILE

    inputs="$(cd "$context" && cat Dockerfile "$product" $extras | sha256sum | cut -d' ' -f1)"
    current="$(docker image inspect --format '{{ index .Config.Labels "refdeploy.inputs" }}' \
        "$image" 2>/dev/null || true)"
    if [ "$current" = "$inputs" ]; then
        continue
    fi

    echo "image: building $image"
    # The classic builder (no buildx needed) warns that it is deprecated on every run: its
    # output is shown only when the build fails.
    if ! DOCKER_BUILDKIT=0 docker build --quiet --label "refdeploy.inputs=$inputs" \
        --label "org.opencontainers.image.title=$product" -t "$image" "$context" \
        >"$context/build.log" 2>&1; then
        cat "$context/build.log" >&2
        exit 1
    fi
done

# A rebuilt image leaves its predecessor untagged; nothing else uses it.
docker image prune --force --filter label=refdeploy.inputs >/dev/null
