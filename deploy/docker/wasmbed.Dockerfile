# The `wasmbed` command, which is both the API server (`wasmbed api`) and
# the device gateway (`wasmbed gateway`): deploy/kubernetes runs this one
# image with either subcommand.
#
# Build from the repository root:
#   docker build -f deploy/docker/wasmbed.Dockerfile -t wasmbed:latest .

# Build: the Rust toolchain on Debian 12, whose glibc the runtime image has.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The dependencies' sources and the target directory are cached between
# builds; the binary is copied out of the cache before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p wasmbed-cli --bin wasmbed \
    && install -D -m 0755 target/release/wasmbed /out/wasmbed

# Run: distroless (glibc and libgcc, no shell, no package manager), as the
# image's unprivileged user 65532, which the Kubernetes manifests also
# require. SQLite is built in (rusqlite's bundled feature) and TLS is
# rustls: no other library is needed.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/wasmbed /usr/local/bin/wasmbed
USER 65532:65532
# 8080: the API server; 40029: devices, 8081: a gateway's HTTP interface.
EXPOSE 8080 8081 40029
ENTRYPOINT ["/usr/local/bin/wasmbed"]
CMD ["--help"]
