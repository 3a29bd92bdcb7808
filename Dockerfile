# syntax=docker/dockerfile:1
# The TMS server in a small image. Build: docker build -t tms .
# Run:   docker run -p 8080:8080 -v tms-data:/data tms

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The same build command as scripts/test, in release mode.
RUN cargo build --locked --release --bins \
 && install -D target/release/tms-server target/release/tms -t /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates curl \
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
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz >/dev/null || exit 1
# SIGTERM (docker stop) drains in-flight requests, then the server exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tms-server"]
