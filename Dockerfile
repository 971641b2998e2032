# mail2ticket container image.
#   docker build -t mail2ticket .
#   docker run -d --name mail2ticket \
#     -v /srv/mail2ticket/config.toml:/etc/mail2ticket/config.toml:ro \
#     -v mail2ticket-data:/var/lib/mail2ticket mail2ticket
# The config must set [store] path = "/var/lib/mail2ticket/tickets.db" and, for the
# HEALTHCHECK, [daemon] http_listen (e.g. "0.0.0.0:9187"). See docs/operations.md.
# The debug info of the binary is a separate artefact:
#   docker build --target symbols --output type=local,dest=symbols .

FROM rust:1.95-bookworm AS build
WORKDIR /app
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
# The dist profile: release with whole-program optimisation (Cargo.toml).
RUN cargo build --profile dist --locked
# The profile keeps line tables (debug = "line-tables-only"): 76 of the binary's 93 MB. Split
# them off into mail2ticket.debug and strip them from the binary (19.2 MB), which keeps its
# symbol table (a backtrace still names functions) and points at the file by its name and CRC
# (.gnu_debuglink; the build-id note ties the two as well). See docs/operations.md.
RUN objcopy --only-keep-debug target/dist/mail2ticket target/dist/mail2ticket.debug \
    && objcopy --strip-debug target/dist/mail2ticket \
    && objcopy --add-gnu-debuglink=target/dist/mail2ticket.debug target/dist/mail2ticket

# Not part of the image: the debug info of exactly this build's binary.
FROM scratch AS symbols
COPY --from=build /app/target/dist/mail2ticket.debug /

# The image (the last stage, what `docker build .` builds).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mail2ticket \
    && useradd --system --uid 10001 --gid mail2ticket --home-dir /var/lib/mail2ticket \
       --no-create-home --shell /usr/sbin/nologin mail2ticket \
    && install -d -o mail2ticket -g mail2ticket -m 0750 /var/lib/mail2ticket \
    && install -d -m 0755 /etc/mail2ticket
COPY --from=build /app/target/dist/mail2ticket /usr/local/bin/mail2ticket
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
