# syntax=docker/dockerfile:1.7
# One image, three binaries: switchboard-node, switchboard-gateway and switchboard-peer (the
# reference WebRTC peer, for the smoke-test Job). One image keeps node, gateway and smoke test
# on the same build of the protocol; each Deployment picks its binary with `command`.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Cache mounts keep the registry and target directory between builds, so a source change
# rebuilds only the workspace crates.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p switchboard-node -p switchboard-gateway \
 && cargo build --release --locked -p switchboard --features rtc --bin switchboard-peer \
 && mkdir -p /out \
 && cp target/release/switchboard-node target/release/switchboard-gateway target/release/switchboard-peer /out/

# No HEALTHCHECK: Kubernetes probes /healthz and /readyz, and distroless has no shell or curl
# to run one with.
#checkov:skip=CKV_DOCKER_2:Kubernetes probes /healthz and /readyz; no shell in the image
# distroless/cc: glibc and libgcc only, no shell, no package manager; `nonroot` is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8090 8080
ENTRYPOINT ["/usr/local/bin/switchboard-node"]
