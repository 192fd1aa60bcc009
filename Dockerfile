# Hangar's image: the one binary `hangar`, which the Helm chart runs as the control plane, the
# migrations Job, the Kubernetes cell's agent and the environments' DAG-sync sidecars (as user
# 50000, with a read-only root filesystem). Build from the repository's root:
#   docker build -t <registry>/hangar:<version> .
# It has not been built on the development machine, which has no container engine.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The queries are checked against .sqlx, not a live database.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin hangar

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hangar /usr/local/bin/hangar
USER 50000:50000
ENTRYPOINT ["hangar"]
