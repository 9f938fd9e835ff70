# syntax=docker/dockerfile:1
#
# genesys-router as a container: the HTTP sidecar (`genesys-router serve`).
#
#   docker build -t genesys-router .
#   docker run -d --name genesys-router --stop-timeout 45 -p 8787:8787 \
#     -e GENESYS_CLIENT_ID -e GENESYS_CLIENT_SECRET -e GENESYS_ROUTER_API_KEYS \
#     -v "$PWD/router.toml:/etc/genesys-router/router.toml:ro" \
#     -v genesys-router-state:/var/lib/genesys-router \
#     genesys-router
#
# The sidecar listens on 0.0.0.0 here, which it refuses to do without API keys: the
# mounted config sets `[server] api_keys_env = "GENESYS_ROUTER_API_KEYS"` (the keys,
# comma-separated, come in that env var), or, behind a proxy that authenticates,
# append `--allow-unauthenticated` to the `docker run` line. The example config baked
# into the image sets neither, so the image alone stops at once with exit code 3.
#
# Stopping: SIGTERM makes the sidecar stop accepting, let in-flight calls finish for
# `[server] drain_timeout_ms` (30 s by default), then flush the audit trail. Docker
# kills a container 10 s after SIGTERM unless told otherwise, which would cut the drain
# short: the stop timeout must exceed the drain plus 10 s (the cancelled calls' answers,
# the audit flush), e.g. `docker stop -t 45 genesys-router`
# (`--stop-timeout 45` on `docker run`, `stop_grace_period: 45s` in Compose,
# `terminationGracePeriodSeconds: 45` in Kubernetes).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and the dependency builds between image builds; the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway-cli \
 && install -D -m 0755 target/release/genesys-router /out/genesys-router

FROM debian:bookworm-slim
# ca-certificates: for `[tls] roots = "native"` (the default, webpki, is compiled in).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 genesys-router \
 && useradd --system --uid 10001 --gid genesys-router --no-create-home \
      --home-dir /var/lib/genesys-router --shell /usr/sbin/nologin genesys-router \
 && install -d -m 0755 /etc/genesys-router \
 && install -d -m 0750 -o genesys-router -g genesys-router /var/lib/genesys-router
COPY --from=builder /out/genesys-router /usr/local/bin/genesys-router
# A starting point only: mount your own config over it.
COPY examples/router.toml /etc/genesys-router/router.toml

# Relative paths in the config (the example's `audit/genesys-router-audit.jsonl` and
# `audit/spool`) land in the state volume.
WORKDIR /var/lib/genesys-router
VOLUME ["/etc/genesys-router", "/var/lib/genesys-router"]
# Numeric, so `runAsNonRoot` admission checks can verify it.
USER 10001:10001
# `serve --config` defaults to this; `-e GENESYS_ROUTER_CONFIG=...` points elsewhere.
ENV GENESYS_ROUTER_CONFIG=/etc/genesys-router/router.toml
EXPOSE 8787
STOPSIGNAL SIGTERM
# The binary probes itself: the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["genesys-router", "healthcheck", "http://127.0.0.1:8787/healthz"]
# More arguments go after the image name: `docker run ... genesys-router --drain-secs 20`.
ENTRYPOINT ["genesys-router", "serve", "--listen", "0.0.0.0:8787"]
