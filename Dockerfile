# syntax=docker/dockerfile:1
# The TMS server in a small image. Build: docker build -t tms .
# Run:   docker run -p 8080:8080 -v tms-data:/data tms

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies in a layer of their own, built from the manifests with
# placeholder sources: a change to the project's sources rebuilds only its
# own crates.
COPY Cargo.toml Cargo.lock ./
COPY signing/Cargo.toml signing/
COPY packages/Cargo.toml packages/
COPY server/Cargo.toml server/
COPY cli/Cargo.toml cli/
COPY tests/Cargo.toml tests/
RUN for crate in signing packages server cli tests; do mkdir -p $crate/src; touch $crate/src/lib.rs; done \
 && mkdir -p tests/src/bin tests/tests/e2e \
 && for main in server/src/main.rs cli/src/main.rs tests/src/bin/tms-bench.rs tests/tests/e2e/main.rs; do \
      echo 'fn main() {}' > $main; done \
 && cargo build --locked --release -p tms-server -p tms-cli --bins
COPY . .
# The real sources may be older than the placeholders: touched, so cargo
# rebuilds the project's crates (and only those).
RUN find signing packages server cli tests -name '*.rs' -exec touch {} + \
 && cargo build --locked --release -p tms-server -p tms-cli --bins \
 && install -D target/release/tms-server target/release/tms -t /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 postgresql-client ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tms \
 && mkdir -p /data && chown tms:tms /data
COPY --from=build /out/ /usr/local/bin/
USER tms
ENV TMS_DATA_DIR=/data \
    TMS_LISTEN=0.0.0.0:8080 \
    TMS_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
# The port of TMS_LISTEN, whatever it is set to when the container runs.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD if [ -n "$TMS_TLS_CERT" ]; then scheme=https; else scheme=http; fi; \
      curl -fsSk "$scheme://127.0.0.1:${TMS_LISTEN##*:}/healthz" >/dev/null || exit 1
# SIGTERM (docker stop) drains in-flight requests, then the server exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tms-server"]
