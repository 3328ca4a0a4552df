# Multi-stage build of both binaries; the runtime image runs as a non-root user.
#   docker build -t coldsend .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --release -p coldsend-producer -p coldsend-worker \
 && cp target/release/coldsend target/release/coldsend-worker /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 coldsend \
 && useradd --system --uid 10001 --gid coldsend --no-create-home --shell /usr/sbin/nologin coldsend
COPY --from=build /usr/local/bin/coldsend /usr/local/bin/coldsend-worker /usr/local/bin/
COPY config/coldsend.toml /etc/coldsend/config/coldsend.toml
ENV COLDSEND_CONFIG=/etc/coldsend/config/coldsend.toml \
    COLDSEND_LOG__FORMAT=json
USER 10001:10001
EXPOSE 8080 9090 9091
ENTRYPOINT []
CMD ["/usr/local/bin/coldsend-worker"]
