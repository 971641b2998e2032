# mail2ticket container image.
#   docker build -t mail2ticket .
#   docker run -d --name mail2ticket \
#     -v /srv/mail2ticket/config.toml:/etc/mail2ticket/config.toml:ro \
#     -v mail2ticket-data:/var/lib/mail2ticket mail2ticket
# The config must set [store] path = "/var/lib/mail2ticket/tickets.db" and, for the
# HEALTHCHECK, [daemon] http_listen (e.g. "0.0.0.0:9187"). See docs/operations.md.

FROM rust:1.95-bookworm AS build
WORKDIR /app
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mail2ticket \
    && useradd --system --uid 10001 --gid mail2ticket --home-dir /var/lib/mail2ticket \
       --no-create-home --shell /usr/sbin/nologin mail2ticket \
    && install -d -o mail2ticket -g mail2ticket -m 0750 /var/lib/mail2ticket \
    && install -d -m 0755 /etc/mail2ticket
COPY --from=build /app/target/release/mail2ticket /usr/local/bin/mail2ticket
COPY config/example.toml /etc/mail2ticket/config.example.toml
ENV MAIL2TICKET_CONFIG=/etc/mail2ticket/config.toml
USER mail2ticket
VOLUME ["/var/lib/mail2ticket"]
# Only when [daemon] http_listen = "0.0.0.0:9187" (/healthz, /metrics).
EXPOSE 9187
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["mail2ticket", "healthcheck"]
ENTRYPOINT ["mail2ticket"]
CMD ["run"]
