#!/usr/bin/env bash
# The release image without a container daemon and without a base image: a rootfs of the
# release binaries, exactly the shared libraries they load, and what distroless/cc adds
# (passwd/group with `nonroot` 65532, /tmp, /home/nonroot), packed by umoci (Debian `umoci`)
# into an OCI layout at target/oci/switchboard:<version>. Same binaries and paths as the
# Dockerfile's image, which needs a registry to pull its bases from.
#
#   image/build.sh              cargo build (a no-op when fresh), then the image
#   image/build.sh --archive    also target/oci/switchboard-<version>.oci.tar (oci-archive),
#                               for `skopeo copy oci-archive:…` or `podman load -i …`
#   image/build.sh --no-build   use target/release as it is (fails if a binary is missing)
#
# Reproducible: every timestamp (file mtimes, layer tar, config, history) is
# SOURCE_DATE_EPOCH, by default the last commit's time, so the same binaries give the same
# image digest.
set -euo pipefail
script=$(realpath "$0")
cd "$(dirname "$script")/.."

archive=false
build=true
for arg in "$@"; do
  case "$arg" in
    --archive) archive=true ;;
    --no-build) build=false ;;
    *) echo "usage: $0 [--archive] [--no-build]" >&2; exit 2 ;;
  esac
done

for tool in umoci cargo; do
  command -v "$tool" >/dev/null || { echo "$0: \`$tool\` is required (apt-get install -y umoci)" >&2; exit 1; }
done

# The Dockerfile's build stage, command for command: the image then holds the very binaries
# that stage would produce from the same sources (tests/tests/image.rs compares them).
if $build; then
  # Run from a test (`cargo test` sets these for the test process), they would reach build
  # scripts that watch them (ring's: CARGO_MANIFEST_DIR, CARGO_PKG_*) and make every call
  # rebuild the rtc dependency tree — minutes — for nothing.
  for v in $(compgen -e); do
    case "$v" in
      CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
        CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$v" ;;
    esac
  done
  cargo build --release --locked -p switchboard-node -p switchboard-gateway
  cargo build --release --locked -p switchboard --features rtc --bin switchboard-peer
fi
bins=(switchboard-node switchboard-gateway switchboard-peer)
target=${CARGO_TARGET_DIR:-target}

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
layout=$target/oci/switchboard

# Rebuilding gives the same digest, but packing ~150 MB of binaries costs seconds: skip it when the
# image is newer than the binaries and this script.
fresh=true
[ -f "$layout/index.json" ] || fresh=false
for f in "${bins[@]/#/$target/release/}" "$script"; do
  [ "$f" -nt "$layout/index.json" ] && fresh=false
done
if $fresh && { ! $archive || [ "$target/oci/switchboard-$version.oci.tar" -nt "$layout/index.json" ]; }; then
  echo "$layout:$version up to date"
  exit 0
fi

mkdir -p "$target/oci"
work=$(mktemp -d "$target/oci-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/home/nonroot" "$root/usr/share/doc"
for bin in "${bins[@]}"; do
  install -m 0755 "$target/release/$bin" "$root/usr/local/bin/$bin"
done

# Every library the dynamic loader resolves for any binary, at the path it resolves it to
# (the loader itself at the interpreter path baked into the ELF). No ld.so.cache: the
# multiarch directories are in glibc's built-in search path. Since glibc 2.34 the files and
# dns NSS modules live in libc itself, so resolving a Redis host name needs no libnss_*.
libs=$(for bin in "${bins[@]}"; do ldd "$target/release/$bin"; done |
  awk '/=> \// { print $3 } /^\s*\/[^ ]+ \(/ { print $1 }' | sort -u)
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
  # The licences of what we ship, as distroless does (/usr/share/doc/<package>/copyright).
  # dpkg knows a library by the path its package ships, before or after merged /usr.
  pkg=$({ dpkg -S "$lib" || dpkg -S "$(realpath "$lib")"; } 2>/dev/null | head -n1 | cut -d: -f1) || true
  if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
    mkdir -p "$root/usr/share/doc/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/copyright"
  fi
done

# distroless's accounts. No CA certificates: nothing here verifies a TLS peer against public
# roots (Redis is plain TCP; the only TLS is WebRTC's DTLS with self-signed certificates,
# checked by fingerprint). No tzdata: logs are UTC.
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
chmod 0700 "$root/home/nonroot"
chown 65532:65532 "$root/home/nonroot" 2>/dev/null || rootless=--rootless

# Reproducible layer: fixed mtimes, then one layer of the whole tree (umoci writes the tar
# in path order with the owners it finds, or root for all under --rootless).
find "$root" -exec touch -h -d "@$epoch" {} +

rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
history=(--history.created "$created" --history.author switchboard)
# unpack + repack rather than `insert … /`: insert writes the layer's root as an absolute
# "/" entry, which tar and some runtimes warn about or refuse.
umoci unpack ${rootless:-} --image "$layout:$version" "$work/bundle"
cp -a "$root/." "$work/bundle/rootfs/"
touch -h -d "@$epoch" "$work/bundle/rootfs"
# shellcheck disable=SC2086 # $rootless is empty or one flag
umoci repack ${rootless:-} --image "$layout:$version" "${history[@]}" \
  --history.created_by "image/build.sh: ${bins[*]} and their libraries" "$work/bundle"
umoci config --image "$layout:$version" --no-history \
  --created "$created" --author switchboard --os linux --architecture amd64 \
  --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/switchboard-node \
  --config.workingdir / \
  --config.exposedports 8090/tcp --config.exposedports 8080/tcp \
  --config.env PATH=/usr/local/bin \
  --config.label org.opencontainers.image.title=switchboard \
  --config.label "org.opencontainers.image.description=WebRTC signaling cluster: switchboard-node, switchboard-gateway, switchboard-peer" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label "org.opencontainers.image.created=$created" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --manifest.annotation "org.opencontainers.image.version=$version" \
  --manifest.annotation "org.opencontainers.image.revision=$revision" \
  --manifest.annotation "org.opencontainers.image.created=$created"
umoci gc --layout "$layout"

if $archive; then
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -C "$layout" -cf "$target/oci/switchboard-$version.oci.tar" .
  echo "$target/oci/switchboard-$version.oci.tar"
fi
echo "$layout:$version $(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$layout/index.json")"
