# syntax=docker/dockerfile:1.7
# irsa: one static-ish binary on distroless, non-root. `make image` builds it.
#
# Stage 1 builds with the same toolchain as CI; the cache mounts keep the registry and the
# target dir between builds, so a code change rebuilds only the irsa crate.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Everything Cargo.toml names (benches, the `it` test target) must exist for the manifest to
# load; .dockerignore keeps target/ and .git out.
COPY . .
# IRSA_IMAGE_LINK (build.rs): packed relocations, which the runtime's glibc 2.36 reads.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    IRSA_IMAGE_LINK=1 cargo build --release --locked --bin irsa \
    && install -D -m 0755 target/release/irsa /out/irsa
# The version is baked in by Cargo (CARGO_PKG_VERSION); fail the build if it is not the one
# the image is tagged with.
ARG VERSION
RUN test -z "${VERSION}" || /out/irsa --version | grep -qx "irsa ${VERSION}" \
    || { echo "irsa --version is '$(/out/irsa --version)', expected 'irsa ${VERSION}'" >&2; exit 1; }

# Stage 2: glibc + CA certificates, no shell, no package manager, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION
LABEL org.opencontainers.image.title="irsa" \
      org.opencontainers.image.description="IAM Roles for Service Accounts for Kubernetes: webhook, controller, doctor" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/irsa /usr/local/bin/irsa
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/irsa"]
CMD ["--help"]
